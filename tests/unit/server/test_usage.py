"""Usage extraction from JSON and SSE responses, including lines split across chunks."""

from __future__ import annotations

import json

import pytest

from extproc.server.usage import Usage, UsageParser

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
