"""Finding and rewriting the top-level model without re-serialising the body."""

from __future__ import annotations

import json

import pytest

from extproc.errors import BadRequest
from extproc.server.body import parse_body, rewrite_model


@pytest.mark.parametrize(
    ("raw", "model", "rewritten"),
    [
        pytest.param(b'{"model":"a","x":1}', "a", b'{"model":"NEW","x":1}', id="first-key"),
        pytest.param(
            b'{"messages":[{"model":"z"}], "model" :  "a", "t": 0.10}',
            "a",
            b'{"messages":[{"model":"z"}], "model" :  "NEW", "t": 0.10}',
            id="nested-model-key-untouched",
        ),
        pytest.param(
            b'{"x":{"model":"in"},"model":"out"}', "out", b'{"x":{"model":"in"},"model":"NEW"}',
            id="nested-object-first",
        ),
        pytest.param(
            b'{"model":"a","model":"b"}', "b", b'{"model":"a","model":"NEW"}', id="duplicate-last"
        ),
        pytest.param(
            b'{"mod\\u0065l":"q"}', "q", b'{"mod\\u0065l":"NEW"}', id="escaped-key"
        ),
        # A duplicate whose earlier value is not a string: JSON keeps the last one.
        pytest.param(
            b'{"model": 1, "model": "b"}', "b", b'{"model": 1, "model": "NEW"}',
            id="duplicate-after-number",
        ),
        pytest.param(
            b'{"model": null, "mod\\u0065l": "b"}', "b", b'{"model": null, "mod\\u0065l": "NEW"}',
            id="duplicate-after-null-escaped",
        ),
        pytest.param(
            b'{"model": {"a": [1]}, "model": "b"}', "b", b'{"model": {"a": [1]}, "model": "NEW"}',
            id="duplicate-after-object",
        ),
        pytest.param(
            b'{"model": "a", "model": true, "model": "b"}', "b",
            b'{"model": "a", "model": true, "model": "NEW"}', id="duplicate-after-bool",
        ),
        pytest.param(
            b'{"p":"say \\"model\\": x","model":"m"}', "m",
            b'{"p":"say \\"model\\": x","model":"NEW"}', id="model-inside-string",
        ),
        pytest.param(
            '{"model":"caf\u00e9","n":1}'.encode(), "caf\u00e9", b'{"model":"NEW","n":1}',
            id="utf8-value",
        ),
    ],
)  # fmt: skip
def test_rewrite_changes_only_the_model_value(raw: bytes, model: str, rewritten: bytes) -> None:
    parsed = parse_body(raw)
    assert parsed.model == model
    assert rewrite_model(raw, parsed, "NEW") == rewritten
    assert json.loads(rewritten)["model"] == "NEW"


def test_unchanged_model_returns_the_same_object() -> None:
    raw = b'{"model": "a"}'
    parsed = parse_body(raw)
    assert rewrite_model(raw, parsed, "a") is raw


def test_new_model_is_json_escaped() -> None:
    raw = b'{"model": "a"}'
    out = rewrite_model(raw, parse_body(raw), 'we"ird\\name')
    assert json.loads(out)["model"] == 'we"ird\\name'


def test_large_body_keeps_float_formatting_and_key_order() -> None:
    content = "x" * 100_000
    raw = json.dumps({"temperature": 0.10, "messages": [{"content": content}], "model": "a"})
    raw_b = raw.replace("0.1", "0.10").encode()
    out = rewrite_model(raw_b, parse_body(raw_b), "b")
    assert out == raw_b.replace(b'"model": "a"', b'"model": "b"')


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"not json", "not valid JSON", id="not-json"),
        pytest.param(b'{"model": "a"', "not valid JSON", id="truncated"),
        pytest.param(b"\xff\xfe\x00", "not valid", id="not-utf8"),
        pytest.param(b"[1, 2]", "JSON object", id="array"),
        pytest.param(b'{"prompt": "x"}', "missing 'model'", id="no-model"),
        pytest.param(b'{"model": 3}', "must be a string", id="model-number"),
        pytest.param(b'{"model": null}', "must be a string", id="model-null"),
    ],
)
def test_bad_bodies_are_bad_requests(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_body(raw)
