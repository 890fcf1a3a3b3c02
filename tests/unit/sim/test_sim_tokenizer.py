"""The simulator's tokenizer rule and generated filler text."""

from __future__ import annotations

import pytest

from extproc.sim.tokenizer import (
    CHAT_GENERATION_PROMPT,
    CHAT_MESSAGE_OVERHEAD,
    FILLER_WORDS,
    count_tokens,
    filler_bytes,
    filler_text,
    tokenize,
    tokenize_chat,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        pytest.param("Hello, world!", ["Hell", "o", ",", "worl", "d", "!"], id="punctuation"),
        pytest.param("  a  b\n", ["a", "b"], id="whitespace-dropped"),
        pytest.param("", [], id="empty"),
        pytest.param("x=1.5", ["x", "=", "1", ".", "5"], id="symbols"),
        pytest.param("héllo", ["héll", "o"], id="unicode-word"),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens
    assert count_tokens(text) == len(tokens)


def test_chat_adds_fixed_overhead_per_message_and_generation_prompt() -> None:
    messages = [("system", "be brief"), ("user", "introduce yourself")]
    content = count_tokens("be brief") + count_tokens("introduce yourself")
    expected = content + 2 * CHAT_MESSAGE_OVERHEAD + len(CHAT_GENERATION_PROMPT)
    assert len(tokenize_chat(messages)) == expected


def test_filler_text_retokenizes_to_one_token_per_generated_token() -> None:
    text = filler_text(5, 300)
    assert count_tokens(text) == 300
    assert all(len(w) <= 4 for w in FILLER_WORDS)


def test_filler_bytes_match_text() -> None:
    joined = b"".join(filler_bytes(9, i) for i in range(20)).decode()
    assert joined == filler_text(9, 20)
