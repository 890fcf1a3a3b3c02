"""A tiny blocking HTTP client for tests: exact status, headers and body bytes."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from extproc.stack.stack import LocalStack


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    path: str = "/v1/chat/completions",
    body: bytes | dict[str, Any] | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    all_headers = {"host": "example.com", **(headers or {})}
    if payload is not None:
        all_headers.setdefault("content-type", "application/json")
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def chat(model: str = "/model/llama2", max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_completion_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": "introduce yourself"}],
        **extra,
    }


def picker_metrics(stack: LocalStack) -> str:
    """The picker's Prometheus exposition."""
    return request(stack.metrics_url, "/metrics", method="GET").body.decode()


def metric_sum(stack: LocalStack, prefix: str) -> float:
    """The sum of every sample of the picker's exposition whose line starts with `prefix`."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in picker_metrics(stack).splitlines()
        if line.startswith(prefix)
    )
