"""Parsing of OpenAI request bodies, vLLM-style errors, and response/SSE building."""

from __future__ import annotations

import json

import pytest

from extproc.sim.openai_api import (
    ApiError,
    BadRequest,
    RequestKind,
    context_length_error,
    model_not_found,
    parse_request,
)
from extproc.sim.responses import DONE, StreamEncoder, full_response
from extproc.sim.tokenizer import count_tokens


def chat(**fields: object) -> bytes:
    body: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return json.dumps(body).encode()


def test_chat_request_fields() -> None:
    req = parse_request(
        "chat",
        chat(max_completion_tokens=100, stream=True, stream_options={"include_usage": True}),
    )
    assert req.model == "m" and req.max_tokens == 100
    assert req.stream and req.include_usage
    assert len(req.prompt_tokens) == count_tokens("hi") + 5


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert parse_request("chat", chat(max_completion_tokens=5, max_tokens=9)).max_tokens == 5
    assert parse_request("chat", chat(max_tokens=9)).max_tokens == 9
    assert parse_request("chat", chat()).max_tokens is None


@pytest.mark.parametrize(
    ("prompt", "length"),
    [
        pytest.param("a b c", 3, id="string"),
        pytest.param([1, 2, 3, 4], 4, id="token-ids"),
        pytest.param(["a b"], 2, id="batch-of-one"),
    ],
)
def test_completion_prompt_forms(prompt: object, length: int) -> None:
    body = json.dumps({"model": "m", "prompt": prompt}).encode()
    assert len(parse_request("completion", body).prompt_tokens) == length


def test_chat_content_parts_are_joined() -> None:
    body = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a b"}]}])
    assert len(parse_request("chat", body).prompt_tokens) == 2 + 5


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        pytest.param("chat", b"{not json", "not valid JSON", id="malformed-json"),
        pytest.param("chat", b"[1]", "JSON object", id="not-an-object"),
        pytest.param("chat", b'{"messages": []}', "`model`", id="missing-model"),
        pytest.param("chat", chat(model=7), "`model`", id="model-not-string"),
        pytest.param("chat", chat(messages=[]), "`messages`", id="no-messages"),
        pytest.param("chat", chat(messages=[{"content": "x"}]), "`role`", id="no-role"),
        pytest.param("chat", chat(max_tokens=0), "at least 1", id="max-tokens-zero"),
        pytest.param("chat", chat(max_completion_tokens=-3), "at least 1", id="negative"),
        pytest.param("chat", chat(max_tokens="5"), "integer", id="max-tokens-string"),
        pytest.param("chat", chat(max_tokens=True), "integer", id="max-tokens-bool"),
        pytest.param("chat", chat(stream="yes"), "boolean", id="stream-not-bool"),
        pytest.param("chat", chat(stream_options={"include_usage": True}), "stream=True", id="so"),
        pytest.param("chat", chat(n=2), "n=1", id="n-2"),
        pytest.param("completion", b'{"model": "m"}', "`prompt`", id="no-prompt"),
        pytest.param("completion", b'{"model": "m", "prompt": 5}', "`prompt`", id="bad-prompt"),
        pytest.param("chat", b"\xff\xfe", "not valid JSON", id="not-utf8"),
    ],
)
def test_bad_requests(kind: RequestKind, body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_request(kind, body)
    assert message in err.value.message
    data = json.loads(err.value.body())
    assert data["object"] == "error" and data["code"] == 400
    assert data["type"] == "BadRequestError"


def test_not_found_matches_vllm() -> None:
    assert json.loads(model_not_found("x").body()) == {
        "object": "error",
        "message": "The model `x` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }


def test_context_length_error_message() -> None:
    err = context_length_error(4096, 4000, 200)
    assert err.status == 400 and "maximum context length is 4096" in err.message
    assert "4200 tokens (4000 in the messages, 200 in the completion)" in err.message


def test_error_status_override() -> None:
    assert json.loads(ApiError("x", status=503).body())["code"] == 503


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_full_response_schema(kind: RequestKind) -> None:
    data = json.loads(
        full_response(
            kind=kind,
            request_id="1",
            created=5,
            model="m",
            text="a b",
            finish_reason="length",
            prompt_tokens=3,
            completion_tokens=2,
        )
    )
    assert data["object"] == ("chat.completion" if kind == "chat" else "text_completion")
    assert data["model"] == "m" and data["choices"][0]["finish_reason"] == "length"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_stream_chunks_are_valid_json_with_a_usage_chunk() -> None:
    enc = StreamEncoder(kind="chat", request_id="1", created=5, model='we"ird')
    raw = enc.role_chunk() + enc.tokens([b"a", b" b"], "stop") + enc.usage_chunk(3, 2) + DONE
    events = [e for e in raw.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["a", " b"]
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 5
    assert {c["model"] for c in chunks} == {'we"ird'}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
