"""Qualitative fidelity of the engine model, observed over HTTP like the picker sees it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .conftest import StartCluster
from .helpers import MODEL, chat_body, lora_info, metric, metrics, stream

pytestmark = pytest.mark.integration


async def test_ttft_rises_with_queue_length(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(max_num_seqs=2, speed=10)
    address = cluster.addresses[0]
    alone = await stream(http, address, chat_body(max_tokens=10))
    queued = await asyncio.gather(
        *(stream(http, address, chat_body(max_tokens=10)) for _ in range(6))
    )
    ttfts = sorted(r.ttft or 0.0 for r in queued)
    assert alone.ttft is not None
    # Two run at once: the last pair waits for two full batches of 10 tokens.
    assert ttfts[-1] > ttfts[0] + 1.5 * (10 * 0.022 / 10)
    assert ttfts[-1] > 3 * alone.ttft
    values = await metrics(http, address)
    assert metric(values, "vllm:request_queue_time_seconds_sum") > 0.4


async def test_repeated_prefix_lowers_ttft_and_counts_hits(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(speed=10)
    address = cluster.addresses[0]
    system = " ".join(f"rule{i % 97}" for i in range(1500))  # ~3,000 tokens

    async def ttft_of(question: str) -> float:
        before = await metrics(http, address)
        body = {
            "model": MODEL,
            "max_tokens": 1,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
        }
        async with http.post(f"http://{address}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
        after = await metrics(http, address)
        name = "vllm:time_to_first_token_seconds_sum"
        return metric(after, name) - metric(before, name)

    cold = await ttft_of("first question")
    warm = await ttft_of("another question entirely")
    assert warm < cold / 5
    values = await metrics(http, address)
    hits = metric(values, "vllm:prefix_cache_hits_total", model_name=MODEL)
    queries = metric(values, "vllm:prefix_cache_queries_total", model_name=MODEL)
    assert hits >= 2900 and queries > hits


async def test_kv_pressure_preempts_instead_of_failing(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(num_gpu_blocks=64, speed=20)  # 1,024 tokens of KV
    address = cluster.addresses[0]
    url = f"http://{address}/v1/completions"
    prompt = list(range(1, 201))

    async def call(i: int) -> int:
        body = {"model": MODEL, "prompt": [i, *prompt], "max_tokens": 150}  # no shared prefix
        async with http.post(url, json=body) as resp:
            data = await resp.json()
            assert data["usage"]["completion_tokens"] == 150
            return resp.status

    calls = asyncio.gather(*(call(i) for i in range(6)))
    peak = 0.0
    while not calls.done():
        values = await metrics(http, address)
        peak = max(peak, metric(values, "vllm:kv_cache_usage_perc"))
        await asyncio.sleep(0.005)
    assert await calls == [200] * 6
    values = await metrics(http, address)
    assert peak > 0.8
    assert metric(values, "vllm:num_preemptions_total") > 0
    assert metric(values, "vllm:request_success_total", finished_reason="length") == 6
    assert metric(values, "vllm:kv_cache_usage_perc") == 0


async def test_unloaded_adapter_waits_for_a_busy_slot(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(loras=("sql-lora", "tweet-summary"), max_loras=1, speed=10)
    address = cluster.addresses[0]
    first = asyncio.create_task(stream(http, address, chat_body(model="sql-lora", max_tokens=60)))
    for _ in range(200):
        if lora_info(await metrics(http, address))["running_lora_adapters"] == "sql-lora":
            break
        await asyncio.sleep(0.01)
    second = asyncio.create_task(
        stream(http, address, chat_body(model="tweet-summary", max_tokens=5))
    )
    await asyncio.sleep(0.05)
    info = lora_info(await metrics(http, address))
    assert info == {
        "max_lora": "1",
        "running_lora_adapters": "sql-lora",
        "waiting_lora_adapters": "tweet-summary",
    }
    assert metric(await metrics(http, address), "vllm:num_requests_waiting") == 1
    assert not second.done()
    first_result, second_result = await asyncio.gather(first, second)
    assert first_result.done and second_result.done
    assert {c["model"] for c in second_result.chunks} == {"tweet-summary"}
    info = lora_info(await metrics(http, address))
    assert info["running_lora_adapters"] == "" and info["waiting_lora_adapters"] == ""
