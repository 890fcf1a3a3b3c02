"""The HTTP surface of simulated pods: OpenAI schema, SSE, models, metrics, headers, errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from .conftest import StartCluster
from .helpers import MODEL, chat_body, metric, metrics, state, stream

pytestmark = pytest.mark.integration


async def test_chat_completion_json_with_pod_headers(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(pods=2)
    address = cluster.addresses[1]
    body = chat_body(max_completion_tokens=100, temperature=0)
    async with http.post(f"http://{address}/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["x-inference-pod"] == "sim-1"
        assert resp.headers["x-inference-pod-address"] == address
        data = await resp.json()
    assert data["object"] == "chat.completion" and data["model"] == MODEL
    assert data["id"].startswith("chatcmpl-") and isinstance(data["created"], int)
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 100
    assert data["usage"]["completion_tokens"] == 100
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + 100


async def test_default_length_finishes_with_stop(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(speed=50)
    body = {"model": MODEL, "prompt": "tell me"}
    async with http.post(f"http://{cluster.addresses[0]}/v1/completions", json=body) as resp:
        data = await resp.json()
    assert data["object"] == "text_completion"
    assert data["choices"][0]["finish_reason"] == "stop"
    assert 16 <= data["usage"]["completion_tokens"] <= 128


@pytest.mark.parametrize(
    ("path", "body", "obj"),
    [
        pytest.param(
            "chat/completions", chat_body(max_tokens=12), "chat.completion.chunk", id="chat",
        ),
        pytest.param(
            "completions", {"model": MODEL, "prompt": "hi", "max_tokens": 12}, "text_completion",
            id="completion",
        ),
    ],
)  # fmt: skip
async def test_stream_ends_with_usage_then_done(
    start_cluster: StartCluster, http: aiohttp.ClientSession, path: str, body: Any, obj: str
) -> None:
    cluster = await start_cluster()
    body = {**body, "stream_options": {"include_usage": True}}
    result = await stream(http, cluster.addresses[0], body, path)
    assert result.status == 200 and result.done
    assert result.headers["Content-Type"].startswith("text/event-stream")
    assert result.headers["x-inference-pod"] == "sim-0"
    assert {c["object"] for c in result.chunks} == {obj}
    assert len(result.text.split()) == 12
    *content, usage = result.chunks
    assert content[-1]["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 12


async def test_stream_without_include_usage_has_no_usage_chunk(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster()
    result = await stream(http, cluster.addresses[0], chat_body(max_tokens=3))
    assert result.done and all("usage" not in c for c in result.chunks)


async def test_models_health_and_metrics(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(loras=("sql-lora", "tweet-summary"))
    address = cluster.addresses[0]
    async with http.get(f"http://{address}/v1/models") as resp:
        data = (await resp.json())["data"]
        assert resp.headers["x-inference-pod"] == "sim-0"
    assert [(m["id"], m["parent"]) for m in data] == [
        (MODEL, None),
        ("sql-lora", MODEL),
        ("tweet-summary", MODEL),
    ]
    async with http.get(f"http://{address}/health") as resp:
        assert resp.status == 200 and resp.headers["x-inference-pod-address"] == address
    async with http.get(f"http://{address}/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert resp.headers["x-inference-pod"] == "sim-0"
    values = await metrics(http, address)
    assert metric(values, "vllm:num_requests_running", model_name=MODEL) == 0
    assert metric(values, "vllm:cache_config_info", num_gpu_blocks="1000") == 1


async def test_legacy_metric_name(start_cluster: StartCluster, http: aiohttp.ClientSession) -> None:
    cluster = await start_cluster(legacy_metrics=True)
    values = await metrics(http, cluster.addresses[0])
    assert metric(values, "vllm:gpu_cache_usage_perc") == 0
    assert not any(name == "vllm:kv_cache_usage_perc" for name, _ in values)


def chat_bytes(content: str = "x", **fields: Any) -> bytes:
    return json.dumps(chat_body(content, **fields)).encode()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(b"{oops", 400, "not valid JSON", id="malformed-json"),
        pytest.param(b'{"messages": [{"role": "user", "content": "x"}]}', 400, "`model`",
                     id="no-model"),
        pytest.param(chat_bytes(model="gpt-4"), 404, "The model `gpt-4` does not exist.",
                     id="unknown-model"),
        pytest.param(chat_bytes(model="nope-lora"), 404, "does not exist", id="unknown-adapter"),
        pytest.param(chat_bytes(max_tokens=0), 400, "at least 1", id="max-tokens-zero"),
        pytest.param(chat_bytes("word " * 5000), 400, "maximum context length", id="too-long"),
        pytest.param(chat_bytes("word " * 200, max_tokens=4000), 400, "maximum context length",
                     id="too-long-with-completion"),
    ],
)  # fmt: skip
async def test_bad_input_gets_vllm_errors_and_pod_keeps_serving(
    start_cluster: StartCluster,
    http: aiohttp.ClientSession,
    body: bytes,
    status: int,
    message: str,
) -> None:
    cluster = await start_cluster(loras=("sql-lora",))
    address = cluster.addresses[0]
    url = f"http://{address}/v1/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with http.post(url, data=body, headers=headers) as resp:
        assert resp.status == status
        assert resp.headers["x-inference-pod"] == "sim-0"
        error = await resp.json()
    assert error["object"] == "error" and error["code"] == status
    assert message in error["message"] and error["param"] is None
    async with http.post(url, json=chat_body(max_tokens=2)) as resp:
        assert resp.status == 200


async def test_unknown_route_still_has_pod_headers(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster()
    async with http.get(f"http://{cluster.addresses[0]}/nope") as resp:
        assert resp.status == 404 and resp.headers["x-inference-pod"] == "sim-0"


async def test_client_disconnect_aborts_the_request(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(speed=5)
    address = cluster.addresses[0]
    body = chat_body(max_tokens=500, stream=True)
    async with http.post(f"http://{address}/v1/chat/completions", json=body) as resp:
        await resp.content.readline()
    for _ in range(100):
        current = await state(http, address)
        if current["requests_finished"]["abort"] == 1:
            break
        await asyncio.sleep(0.02)
    assert current["requests_finished"]["abort"] == 1
    assert current["running"] == 0 and current["kv_usage"] == 0


async def test_stop_drains_in_flight_requests(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(speed=10)
    url = f"http://{cluster.addresses[0]}/v1/chat/completions"

    async def call() -> int:
        async with http.post(url, json=chat_body(max_tokens=40)) as resp:
            await resp.read()
            return resp.status

    pending = asyncio.create_task(call())
    await asyncio.sleep(0.03)
    await cluster.stop()
    assert await pending == 200
