"""OpenAI response bodies: whole JSON answers and prebuilt SSE chunk templates.

Streaming writes one chunk per generated token, so chunks are assembled from byte templates
made once per request (the generated words need no JSON escaping) instead of json.dumps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from extproc.sim.openai_api import RequestKind

DONE = b"data: [DONE]\n\n"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def response_id(kind: RequestKind, request_id: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + request_id


def full_response(
    *,
    kind: RequestKind,
    request_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """A non-streaming ``chat.completion`` or ``text_completion`` body."""
    choice: dict[str, object]
    if kind == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "tool_calls": []},
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }
    else:
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }
    return json.dumps(
        {
            "id": response_id(kind, request_id),
            "object": "chat.completion" if kind == "chat" else "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": _usage(prompt_tokens, completion_tokens),
        }
    ).encode()


def models_list(model: str, loras: Sequence[str], *, created: int, max_model_len: int) -> bytes:
    """The ``GET /v1/models`` body: the base model, then each adapter with ``parent`` = base."""

    def card(name: str, parent: str | None) -> dict[str, object]:
        return {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": name,
            "parent": parent,
            "max_model_len": max_model_len if parent is None else None,
        }

    cards = [card(model, None)] + [card(name, model) for name in loras]
    return json.dumps({"object": "list", "data": cards}).encode()


class StreamEncoder:
    """SSE chunks for one streaming request."""

    __slots__ = ("_final_suffix", "_head", "_prefix", "_suffix", "kind")

    def __init__(self, *, kind: RequestKind, request_id: str, created: int, model: str) -> None:
        self.kind = kind
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self._head = (
            f'data: {{"id":"{response_id(kind, request_id)}","object":"{obj}",'
            f'"created":{created},"model":{json.dumps(model)},"choices":'
        )
        if kind == "chat":
            self._prefix = (self._head + '[{"index":0,"delta":{"content":"').encode()
            self._suffix = b'"},"logprobs":null,"finish_reason":null}]}\n\n'
            self._final_suffix = '"}},"logprobs":null,"finish_reason":"{}"}}]}}\n\n'
        else:
            self._prefix = (self._head + '[{"index":0,"text":"').encode()
            self._suffix = b'","logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
            self._final_suffix = (
                '","logprobs":null,"finish_reason":"{}","stop_reason":null}}]}}\n\n'
            )

    def role_chunk(self) -> bytes:
        """The chat stream's opening chunk (assistant role, empty content); empty otherwise."""
        if self.kind != "chat":
            return b""
        return (
            self._head + '[{"index":0,"delta":{"role":"assistant","content":""},'
            '"logprobs":null,"finish_reason":null}]}\n\n'
        ).encode()

    def tokens(self, words: Iterable[bytes], finish_reason: str | None) -> bytes:
        """Chunks for ``words`` (already JSON-safe); the last carries ``finish_reason`` if set."""
        prefix = self._prefix
        suffix = self._suffix
        chunks = [prefix + w + suffix for w in words]
        if finish_reason is not None:
            last = chunks.pop() if chunks else prefix + suffix
            chunks.append(last[: -len(suffix)] + self._final_suffix.format(finish_reason).encode())
        return b"".join(chunks)

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The ``stream_options.include_usage`` chunk: empty ``choices`` and ``usage``."""
        usage = json.dumps(_usage(prompt_tokens, completion_tokens))
        return f'{self._head}[],"usage":{usage}}}\n\n'.encode()
