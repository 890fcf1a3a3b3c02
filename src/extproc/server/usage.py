"""Token usage from model-server responses: JSON bodies and Server-Sent Event streams.

The response bytes pass through Envoy unchanged; this only observes them. SSE lines can be split
across body chunks (the reference EPP loses usage that arrives in the same chunk as a split
``data: [DONE]``), so a partial trailing line is kept until the next chunk completes it. Lines
end in LF, CRLF or CR (the SSE format allows all three). A gzip- or deflate-encoded body is
inflated (bounded) before it is read; other encodings are not read.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import orjson

# A non-streaming response larger than this is not decoded for usage (it still passes through).
MAX_JSON_RESPONSE_BYTES = 8 * 1024 * 1024
# An SSE line longer than this is not an event carrying usage (vLLM's is a few hundred bytes):
# it is dropped instead of buffered.
MAX_SSE_LINE_BYTES = 1024 * 1024
# Inflated bytes per decompress call, and in all: a compression bomb costs bounded work.
_INFLATE_STEP = 256 * 1024
_MAX_INFLATED_BYTES = 64 * 1024 * 1024
_USAGE = b'"usage"'
_EOL = re.compile(rb"\r\n|\r|\n")
_INFLATED = frozenset({"gzip", "x-gzip", "deflate"})


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


class UsageParser:
    """Feed response body chunks in order; `usage` holds the last usage object seen."""

    __slots__ = ("_buffer", "_inflate", "_inflated", "_off", "_skipping", "_sse", "usage")

    def __init__(self, content_type: str, content_encoding: str = "") -> None:
        media = content_type.split(";", 1)[0].strip().lower()
        self._sse = media == "text/event-stream"
        encoding = content_encoding.strip().lower()
        # 47: a zlib or a gzip header, detected (deflate is zlib-wrapped on the wire).
        self._inflate = zlib.decompressobj(47) if encoding in _INFLATED else None
        self._inflated = 0
        # Not read at all: an encoding we cannot decode (br, zstd...), or too large.
        self._off = bool(encoding) and encoding != "identity" and self._inflate is None
        self._buffer = bytearray()
        self._skipping = False  # inside an SSE line longer than MAX_SSE_LINE_BYTES
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> None:
        if self._off:
            return
        if self._inflate is None:
            self._feed(chunk)
            return
        try:
            data = self._inflate.decompress(chunk, _INFLATE_STEP)
            while True:
                self._inflated += len(data)
                if self._inflated > _MAX_INFLATED_BYTES:
                    self._stop()
                    return
                self._feed(data)
                inflate = self._inflate
                if inflate.eof and inflate.unused_data:  # the next gzip member (RFC 1952)
                    self._inflate = zlib.decompressobj(47)
                    data = self._inflate.decompress(inflate.unused_data, _INFLATE_STEP)
                elif inflate.unconsumed_tail:
                    data = inflate.decompress(inflate.unconsumed_tail, _INFLATE_STEP)
                else:
                    return
        except zlib.error:
            self._stop()

    def finish(self) -> Usage | None:
        if self._sse:
            if self._buffer and not self._skipping:  # a last event without a line end
                self._line(bytes(self._buffer))
        elif not self._off and _USAGE in self._buffer:
            self._take(self._buffer)
        self._buffer.clear()
        return self.usage

    def _stop(self) -> None:
        self._off = True
        self._buffer.clear()

    def _feed(self, chunk: bytes) -> None:
        if self._sse:
            self._feed_sse(chunk)
        else:
            self._buffer += chunk
            if len(self._buffer) > MAX_JSON_RESPONSE_BYTES:
                self._stop()

    def _feed_sse(self, chunk: bytes) -> None:
        last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if last < 0:  # no line ends here: the partial line grows (appended, never recopied)
            self._keep(chunk)
            return
        if last == len(chunk) - 1:  # the usual chunk: whole events
            head, tail = chunk, b""
        else:
            head, tail = chunk[: last + 1], chunk[last + 1 :]
        if self._skipping:  # the end of an over-long line: drop it
            end = _EOL.search(head)
            assert end is not None
            head = head[end.end() :]
            self._skipping = False
        elif self._buffer:
            head = bytes(self._buffer) + head
            self._buffer.clear()
        # Common case: token deltas without usage; only a partial tail is kept.
        if _USAGE in head:
            for line in _EOL.split(head):
                self._line(line)
        if tail:
            self._keep(tail)

    def _keep(self, partial: bytes) -> None:
        if self._skipping:
            return
        self._buffer += partial
        if len(self._buffer) > MAX_SSE_LINE_BYTES:
            self._buffer.clear()
            self._skipping = True

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
