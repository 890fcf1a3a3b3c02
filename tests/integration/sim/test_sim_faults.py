"""Fault injection through flags and the per-pod admin API: errors, latency, stall, crash."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from extproc.sim.faults import FaultConfig

from .conftest import StartCluster
from .helpers import chat_body, state

pytestmark = pytest.mark.integration


async def post_chat(http: aiohttp.ClientSession, address: str, **kwargs: object) -> int:
    url = f"http://{address}/v1/chat/completions"
    async with http.post(url, json=chat_body(max_tokens=2), **kwargs) as resp:  # type: ignore[arg-type]
        await resp.read()
        return resp.status


async def set_faults(http: aiohttp.ClientSession, address: str, **changes: object) -> None:
    async with http.post(f"http://{address}/admin/faults", json=changes) as resp:
        assert resp.status == 200, await resp.text()


async def test_error_rate_from_flags_and_runtime(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(faults=FaultConfig(error_rate=1.0, error_status=503))
    address = cluster.addresses[0]
    url = f"http://{address}/v1/chat/completions"
    async with http.post(url, json=chat_body(max_tokens=2)) as resp:
        assert resp.status == 503
        assert resp.headers["x-inference-pod"] == "sim-0"
        error = await resp.json()
    assert error["object"] == "error" and error["code"] == 503
    await set_faults(http, address, error_rate=0.0)
    assert await post_chat(http, address) == 200
    await set_faults(http, address, error_rate=0.5, error_status=500)
    statuses = [await post_chat(http, address) for _ in range(40)]
    assert 5 <= statuses.count(500) <= 35 and statuses.count(200) + statuses.count(500) == 40
    current = await state(http, address)
    assert current["faults"]["error_rate"] == 0.5
    assert current["injected_errors"] == 1 + statuses.count(500)


async def test_added_latency(start_cluster: StartCluster, http: aiohttp.ClientSession) -> None:
    cluster = await start_cluster(speed=100)
    address = cluster.addresses[0]
    await set_faults(http, address, latency_ms=250)
    start = time.monotonic()
    assert await post_chat(http, address) == 200
    assert time.monotonic() - start >= 0.25


async def test_stall_accepts_but_never_answers(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster()
    address = cluster.addresses[0]
    await set_faults(http, address, stall=True)
    with pytest.raises(asyncio.TimeoutError):
        await post_chat(http, address, timeout=aiohttp.ClientTimeout(total=0.3))
    async with http.get(f"http://{address}/health") as resp:
        assert resp.status == 200  # the pod is alive, only inference hangs
    await set_faults(http, address, stall=False)
    assert await post_chat(http, address) == 200


async def test_crash_closes_only_that_pod(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(pods=2, speed=5)
    crashed, alive = cluster.addresses
    in_flight = asyncio.create_task(post_chat_long(http, crashed))  # dropped by the crash
    await asyncio.sleep(0.05)
    async with http.post(f"http://{crashed}/admin/crash") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "crashing"
    await asyncio.sleep(0.2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_chat(http, crashed)
    with pytest.raises(aiohttp.ClientError):
        await in_flight
    assert await post_chat(http, alive) == 200
    assert cluster.pod("sim-0").crashed and not cluster.pod(alive).crashed


async def post_chat_long(http: aiohttp.ClientSession, address: str) -> None:
    url = f"http://{address}/v1/chat/completions"
    async with http.post(url, json=chat_body(max_tokens=1000)) as resp:
        await resp.read()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{", "not valid JSON", id="malformed"),
        pytest.param(b"[]", "JSON object", id="not-object"),
        pytest.param(b'{"error_rate": 3}', "between 0 and 1", id="bad-value"),
        pytest.param(b'{"explode": true}', "unknown fault setting", id="unknown-key"),
    ],
)
async def test_bad_fault_updates_are_rejected(
    start_cluster: StartCluster, http: aiohttp.ClientSession, body: bytes, message: str
) -> None:
    cluster = await start_cluster()
    url = f"http://{cluster.addresses[0]}/admin/faults"
    async with http.post(url, data=body) as resp:
        assert resp.status == 400
        assert message in (await resp.json())["message"]
    async with http.get(url) as resp:
        assert await resp.json() == {
            "error_rate": 0.0,
            "error_status": 500,
            "latency_ms": 0.0,
            "stall": False,
        }


async def test_crashed_pod_restarts_on_the_same_address(
    start_cluster: StartCluster, http: aiohttp.ClientSession
) -> None:
    cluster = await start_cluster(speed=50)
    address = cluster.addresses[0]
    await cluster.crash("sim-0")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_chat(http, address)
    await cluster.restart("sim-0")
    assert cluster.addresses == [address]
    assert await post_chat(http, address) == 200
