"""Client helpers for simulator integration tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

MODEL = "/model/llama2"


def chat_body(content: str = "introduce yourself", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    body.update(fields)
    return body


@dataclass
class StreamResult:
    status: int
    headers: dict[str, str]
    chunks: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    ttft: float | None = None  # wall seconds to the first content chunk

    @property
    def text(self) -> str:
        parts = []
        for chunk in self.chunks:
            for choice in chunk["choices"]:
                parts.append(choice.get("text") or choice.get("delta", {}).get("content") or "")
        return "".join(parts)


async def stream(
    http: aiohttp.ClientSession, address: str, body: dict[str, Any], path: str = "chat/completions"
) -> StreamResult:
    """POST a streaming request and collect its SSE events."""
    start = time.monotonic()
    async with http.post(f"http://{address}/v1/{path}", json={**body, "stream": True}) as resp:
        result = StreamResult(status=resp.status, headers=dict(resp.headers))
        async for raw in resp.content:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                result.done = True
                continue
            chunk = json.loads(data)
            if result.ttft is None and chunk["choices"]:
                result.ttft = time.monotonic() - start
            result.chunks.append(chunk)
    return result


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def metrics(http: aiohttp.ClientSession, address: str) -> Samples:
    """``{(sample name, label items): value}`` of a pod's /metrics page."""
    async with http.get(f"http://{address}/metrics") as resp:
        text = await resp.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(values: Samples, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    found = [v for (n, items), v in values.items() if n == name and wanted <= items]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def lora_info(values: Samples) -> dict[str, str]:
    """Labels of the newest vllm:lora_requests_info series."""
    series = [
        (v, dict(items)) for (n, items), v in values.items() if n == "vllm:lora_requests_info"
    ]
    return max(series, key=lambda pair: pair[0])[1]


async def state(http: aiohttp.ClientSession, address: str) -> dict[str, Any]:
    async with http.get(f"http://{address}/admin/state") as resp:
        data: dict[str, Any] = await resp.json()
        return data
