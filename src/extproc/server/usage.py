"""Token usage from model-server responses: JSON bodies and Server-Sent Event streams.

The response bytes pass through Envoy unchanged; this only observes them. SSE lines can be split
across body chunks (the reference EPP loses usage that arrives in the same chunk as a split
``data: [DONE]``), so a partial trailing line is kept until the next chunk completes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

# A non-streaming response larger than this is not decoded for usage (it still passes through).
MAX_JSON_RESPONSE_BYTES = 8 * 1024 * 1024
_USAGE = b'"usage"'


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


class UsageParser:
    """Feed response body chunks in order; `usage` holds the last usage object seen."""

    __slots__ = ("_buffer", "_overflow", "_sse", "usage")

    def __init__(self, content_type: str) -> None:
        self._sse = content_type.startswith("text/event-stream")
        self._buffer = bytearray()
        self._overflow = False
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> None:
        if self._sse:
            self._feed_sse(chunk)
        elif not self._overflow:
            self._buffer += chunk
            if len(self._buffer) > MAX_JSON_RESPONSE_BYTES:
                self._overflow = True
                self._buffer.clear()

    def finish(self) -> Usage | None:
        if self._sse:
            if self._buffer:  # a last event without a trailing newline
                self._line(bytes(self._buffer))
        elif not self._overflow and _USAGE in self._buffer:
            self._take(self._buffer)
        self._buffer.clear()
        return self.usage

    def _feed_sse(self, chunk: bytes) -> None:
        if self._buffer:
            self._buffer += chunk
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = chunk
        if _USAGE not in data and b"\n" in data:
            # Common case: a chunk of token deltas without usage; keep only a partial tail.
            tail = data[data.rfind(b"\n") + 1 :]
            if tail:
                self._buffer += tail
            return
        *lines, tail = data.split(b"\n")
        for line in lines:
            self._line(line)
        if tail:
            self._buffer += tail

    def _line(self, line: bytes) -> None:
        if line.startswith(b"data:") and _USAGE in line:
            self._take(line[5:])

    def _take(self, payload: bytes | bytearray) -> None:
        try:
            obj = orjson.loads(payload)
        except ValueError:
            return
        usage = obj.get("usage") if isinstance(obj, dict) else None
        if not isinstance(usage, dict):
            return
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            self.usage = Usage(prompt, completion)
