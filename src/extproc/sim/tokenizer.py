"""A deterministic stand-in tokenizer and the filler text the simulated model generates.

Rule: a token is a run of at most 4 word characters (``\\w``) or one other non-space
character; whitespace separates tokens and is not a token. "Hello, world!" is
``Hell o , worl d !`` = 6 tokens; English text comes out at roughly 1.3 tokens per word,
close to real BPE tokenizers. Chat prompts add CHAT_MESSAGE_OVERHEAD tokens per message
(start marker, role, end marker) and CHAT_GENERATION_PROMPT tokens for the assistant turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

_TOKEN_RE: Final = re.compile(r"\w{1,4}|[^\w\s]")

CHAT_MESSAGE_OVERHEAD: Final = 3
CHAT_GENERATION_PROMPT: Final = ("<|im_start|>", "assistant")

# Every filler word is at most 4 letters, so re-tokenizing generated text gives back exactly
# one token per generated token.
FILLER_WORDS: Final = (
    "the", "of", "and", "to", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are",
    "with", "as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by",
    "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "use", "an",
    "each", "she", "do", "how", "if", "will", "up", "out", "many", "then", "them", "so", "some",
    "her", "make", "like", "him", "into", "time", "has", "look", "two", "more", "go", "see", "no",
    "way", "my", "than", "been", "call", "who", "its", "now", "find", "long", "down", "day",
    "did", "get", "come", "made", "may", "part", "over", "new", "take", "only", "work", "know",
    "spot", "year", "live", "me", "back", "give", "most", "very", "good", "man", "idea", "say",
    "help", "low", "line", "turn", "move", "much", "mean", "old", "same", "tell", "boy", "came",
    "show", "also", "form", "set", "ten", "want",
)  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens by the module rule."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    """Number of tokens in ``text``."""
    return len(_TOKEN_RE.findall(text))


def tokenize_chat(messages: Sequence[tuple[str, str]]) -> list[str]:
    """Tokens of a chat prompt given ``(role, text)`` pairs, with the chat-template overhead."""
    tokens: list[str] = []
    for role, text in messages:
        tokens.append("<|im_start|>")
        tokens.append(role)
        tokens.extend(_TOKEN_RE.findall(text))
        tokens.append("<|im_end|>")
    tokens.extend(CHAT_GENERATION_PROMPT)
    return tokens


def filler_word(start: int, index: int) -> str:
    """The ``index``-th generated word of a request whose sequence starts at ``start``."""
    return FILLER_WORDS[(start + index * 7) % len(FILLER_WORDS)]


_WORD_BYTES: Final = tuple(w.encode() for w in FILLER_WORDS)
_SPACED_WORD_BYTES: Final = tuple(b" " + w for w in _WORD_BYTES)


def filler_bytes(start: int, index: int) -> bytes:
    """Token ``index`` of a request as bytes; every token but the first starts with a space."""
    words = _SPACED_WORD_BYTES if index else _WORD_BYTES
    return words[(start + index * 7) % len(words)]


def filler_text(start: int, count: int) -> str:
    """The first ``count`` generated tokens of a request, joined."""
    return " ".join(filler_word(start, i) for i in range(count))
