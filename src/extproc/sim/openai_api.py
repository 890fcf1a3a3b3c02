"""The OpenAI request surface: vLLM-style errors and parsing of completion request bodies."""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from extproc.sim.tokenizer import tokenize, tokenize_chat

RequestKind = Literal["chat", "completion"]


class ApiError(Exception):
    """An error answered as vLLM does: ``{"object":"error","message",...,"code"}``."""

    http_status: ClassVar[int] = 500
    error_type: ClassVar[str] = "InternalServerError"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = self.http_status if status is None else status

    def body(self) -> bytes:
        return json.dumps(
            {
                "object": "error",
                "message": self.message,
                "type": self.error_type,
                "param": None,
                "code": self.status,
            }
        ).encode()


class BadRequest(ApiError):
    http_status, error_type = 400, "BadRequestError"


class NotFound(ApiError):
    http_status, error_type = 404, "NotFoundError"


def model_not_found(model: str) -> NotFound:
    return NotFound(f"The model `{model}` does not exist.")


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletionRequest:
    """What the simulator needs from a /v1/chat/completions or /v1/completions body."""

    kind: RequestKind
    model: str
    prompt_tokens: list[Hashable]
    max_tokens: int | None
    stream: bool
    include_usage: bool


def _content_text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict):
                raise BadRequest("Each content part must be an object.")
            text = part.get("text")
            if isinstance(text, str):
                parts.append(text)
        return " ".join(parts)
    raise BadRequest("Message content must be a string, a list of parts or null.")


def _chat_tokens(body: dict[str, Any]) -> list[Hashable]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Field `messages` must be a non-empty list.")
    pairs: list[tuple[str, str]] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest("Each message must be an object with a string `role`.")
        pairs.append((message["role"], _content_text(message.get("content"))))
    return list(tokenize_chat(pairs))


def _completion_tokens(body: dict[str, Any]) -> list[Hashable]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return list(tokenize(prompt))
    if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
        return list(prompt)  # token ids
    raise BadRequest("Field `prompt` must be a string, a list of token ids or a list of one.")


def _max_tokens(body: dict[str, Any], kind: RequestKind) -> int | None:
    keys = ("max_completion_tokens", "max_tokens") if kind == "chat" else ("max_tokens",)
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if type(value) is not int:
            raise BadRequest(f"Field `{key}` must be an integer.")
        if value < 1:
            raise BadRequest(f"{key} must be at least 1, got {value}.")
        return value
    return None


def parse_request(kind: RequestKind, raw: bytes) -> CompletionRequest:
    """Validate a request body; raise BadRequest with a client-facing message."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        # Real vLLM falls back to its served model; the simulator insists, so that a gateway
        # that drops or mangles the field is caught.
        raise BadRequest("Field `model` is required and must be a non-empty string.")
    n = body.get("n", 1)
    if n not in (None, 1):
        raise BadRequest("The simulator supports only n=1.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise BadRequest("Field `stream` must be a boolean.")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest("Field `stream_options` must be an object.")
        if not stream:
            raise BadRequest("Stream options can only be defined when `stream=True`.")
        include_usage = bool(options.get("include_usage", False))
    tokens = _chat_tokens(body) if kind == "chat" else _completion_tokens(body)
    return CompletionRequest(
        kind=kind,
        model=model,
        prompt_tokens=tokens,
        max_tokens=_max_tokens(body, kind),
        stream=bool(stream),
        include_usage=include_usage,
    )


def context_length_error(max_model_len: int, prompt: int, completion: int) -> BadRequest:
    """vLLM's answer when prompt + completion exceed the context window."""
    return BadRequest(
        f"This model's maximum context length is {max_model_len} tokens. However, you "
        f"requested {prompt + completion} tokens ({prompt} in the messages, {completion} in "
        "the completion). Please reduce the length of the messages or completion."
    )
