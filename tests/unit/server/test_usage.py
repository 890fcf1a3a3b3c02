"""Usage extraction from JSON and SSE responses, including lines split across chunks."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from extproc.server.usage import MAX_SSE_LINE_BYTES, Usage, UsageParser

USAGE = {"prompt_tokens": 12, "completion_tokens": 100, "total_tokens": 112}


def _sse_stream() -> bytes:
    events = [
        {"choices": [{"delta": {"content": "hi"}}], "usage": None},
        {"choices": [{"delta": {"content": " there"}}], "usage": None},
        {"choices": [], "usage": USAGE},
    ]
    return (
        b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )


def test_json_usage() -> None:
    parser = UsageParser("application/json")
    body = json.dumps({"object": "chat.completion", "usage": USAGE}).encode()
    parser.feed(body[:10])
    parser.feed(body[10:])
    assert parser.finish() == Usage(12, 100)


@pytest.mark.parametrize("split", [1, 7, 50, 200, 10_000], ids=lambda s: f"chunk-{s}")
def test_sse_usage_survives_any_chunking(split: int) -> None:
    stream = _sse_stream()
    parser = UsageParser("text/event-stream; charset=utf-8")
    for i in range(0, len(stream), split):
        parser.feed(stream[i : i + split])
    assert parser.finish() == Usage(12, 100)


def test_sse_usage_in_the_same_chunk_as_done() -> None:
    stream = _sse_stream()
    cut = stream.index(b'data: {"choices": []')
    parser = UsageParser("text/event-stream")
    parser.feed(stream[: cut + 20])
    parser.feed(stream[cut + 20 :])
    assert parser.finish() == Usage(12, 100)


def test_sse_without_trailing_newline() -> None:
    parser = UsageParser("text/event-stream")
    parser.feed(b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}')
    assert parser.finish() == Usage(1, 2)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/json", b"not json", id="garbage-json"),
        pytest.param("application/json", b'{"usage": {"prompt_tokens": "x"}}', id="bad-types"),
        pytest.param("text/event-stream", b"data: {broken usage\n\n", id="garbage-sse"),
        pytest.param("application/json", b'{"object": "x"}', id="no-usage"),
    ],
)
def test_no_usage_is_none(content_type: str, body: bytes) -> None:
    parser = UsageParser(content_type)
    parser.feed(body)
    assert parser.finish() is None


def _feed(parser: UsageParser, data: bytes, size: int = 4096) -> Usage | None:
    for i in range(0, len(data), size):
        parser.feed(data[i : i + size])
    return parser.finish()


@pytest.mark.parametrize("content_type", ["Text/Event-Stream", "TEXT/EVENT-STREAM; charset=utf-8"])
def test_media_type_is_case_insensitive(content_type: str) -> None:
    assert _feed(UsageParser(content_type), _sse_stream(), 16) == Usage(12, 100)


@pytest.mark.parametrize("eol", [b"\r", b"\r\n"], ids=["cr", "crlf"])
def test_sse_lines_may_end_in_cr_or_crlf(eol: bytes) -> None:
    stream = _sse_stream().replace(b"\n", eol)
    for size in (1, 3, 16, 10_000):
        assert _feed(UsageParser("text/event-stream"), stream, size) == Usage(12, 100), size


def test_an_over_long_sse_line_is_dropped_and_later_usage_kept() -> None:
    long_line = b'data: {"choices": [{"delta": {"content": "' + b"x" * (2 * MAX_SSE_LINE_BYTES)
    stream = long_line + b'"}}]}\n\n' + _sse_stream()
    assert _feed(UsageParser("text/event-stream"), stream) == Usage(12, 100)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps({"usage": USAGE}).encode()),
        ("text/event-stream", _sse_stream()),
    ],
    ids=["json", "sse"],
)
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_inflated(content_type: str, body: bytes, encoding: str) -> None:
    data = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    assert _feed(UsageParser(content_type, encoding), data, 7) == Usage(12, 100)


def test_unknown_encodings_and_compression_bombs_are_not_read() -> None:
    body = json.dumps({"usage": USAGE}).encode()
    assert _feed(UsageParser("application/json", "br"), body) is None
    # 100 MB of spaces before the usage: inflating stops at the cap, nothing is read.
    bomb = gzip.compress(b" " * (100 * 1024 * 1024) + body)
    assert _feed(UsageParser("application/json", "gzip"), bomb) is None
    assert _feed(UsageParser("application/json", "gzip"), b"not gzip at all") is None


def test_every_gzip_member_is_read() -> None:
    # A body may be several gzip members (RFC 1952), e.g. one per flushed chunk.
    events = _sse_stream().split(b"\n\n")
    members = b"".join(gzip.compress(e + b"\n\n") for e in events if e)
    assert _feed(UsageParser("text/event-stream", "gzip"), members, 5) == Usage(12, 100)
