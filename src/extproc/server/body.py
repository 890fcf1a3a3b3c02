"""OpenAI request bodies: decode once, find the top-level `model`, rewrite only its value.

Decoding uses orjson: about twice as fast as the standard library on long prompts (88 vs 40 µs
for 100 KB here), and strict where `json` is lax (NaN, lone surrogates: both 400 here).

Re-serialising the whole JSON would reorder keys, reformat floats, change the size and cost CPU
on every request; instead we locate the byte span of the top-level ``"model"`` value and splice
a new JSON string into it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from extproc.errors import BadRequest

# A JSON string token (with escapes) or a structural character. Scanning with one compiled
# pattern keeps the per-token work in C; a body needs only a handful of tokens before the
# top-level "model" key in practice.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]', re.DOTALL)
_MODEL_KEY = b'"model"'


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A decoded request body and its top-level model value."""

    data: dict[str, Any]
    model: str


def parse_body(raw: bytes) -> ParsedBody:
    """Decode `raw` as a JSON object with a string `model`; raise BadRequest otherwise."""
    if not raw:
        raise BadRequest("request body is empty; expected a JSON object with a 'model' field")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc):
            raise BadRequest("request body is not valid UTF-8") from None
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str):
        missing = "model" not in data
        raise BadRequest("missing 'model' field" if missing else "'model' must be a string")
    return ParsedBody(data, model)


def rewrite_model(raw: bytes, parsed: ParsedBody, new_model: str) -> bytes:
    """Return `raw` with only the top-level model value replaced by `new_model`.

    The value's byte span is located only here: most requests keep their model, and the scan
    (plus the look-ahead for duplicate keys) costs as much as decoding a long prompt.
    """
    if new_model == parsed.model:
        return raw
    start, end = _model_span(raw)
    encoded = json.dumps(new_model, ensure_ascii=False).encode()
    return b"".join((raw[:start], encoded, raw[end:]))


def _model_span(raw: bytes) -> tuple[int, int]:
    """Byte span of the top-level "model" value (the body is known to be a valid object)."""
    depth = 0
    expect_key = False
    pending_key = False
    span: tuple[int, int] | None = None
    for match in _TOKEN.finditer(raw):
        token = match.group()
        first = token[0]
        if first == 0x22:  # a string
            if pending_key:
                span = match.span()
                pending_key = False
                # JSON decoders keep the last of duplicate keys: look further only if another
                # "model" key may follow, spelled plainly or with \u escapes.
                end = span[1]
                if raw.find(b'"model"', end) < 0 and raw.find(b"\\u", end) < 0:
                    return span
            if depth == 1 and expect_key and _is_model_key(token):
                pending_key = True
            expect_key = False
        elif first != 0x3A:  # (after a colon the key's value follows)
            # A pending "model" key whose value is not a string (a number, null, true/false,
            # an object or an array): a later duplicate "model" key may still decide.
            pending_key = False
            if first in b"{[":
                depth += 1
                expect_key = first == 0x7B
            elif first in b"}]":
                depth -= 1
            else:  # a comma: the next string at depth 1 in an object is a key
                expect_key = True
    if span is None:  # unreachable for a body that decoded with a string model
        raise BadRequest("could not locate the 'model' value")
    return span


def _is_model_key(token: bytes) -> bool:
    if token == _MODEL_KEY:
        return True
    # A key written with escapes (e.g. "mod\u0065l") still means "model" to JSON.
    return b"\\" in token and json.loads(token) == "model"
