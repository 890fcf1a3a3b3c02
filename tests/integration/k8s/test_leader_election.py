"""Two picker processes, one Lease: exactly one serves; SIGKILL hands over within the lease."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest

from extproc._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from extproc.server.service import SERVICE_NAME
from tests.integration.k8s.conftest import Picker, StartPicker
from tests.unit.k8s.builders import POOL, eventually, make_model, make_pod, make_pool
from tests.unit.k8s.fake_apiserver import FakeApiServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LEASE_S = 2.0
LEASE = f"{POOL}-epp-leader"
# Standby notices expiry on its next retry (lease/4) after the lease lapses, plus process noise.
HANDOVER_MARGIN_S = 1.5


async def serving(picker: Picker) -> bool:
    statuses = [await picker.health(s) for s in ("readiness", SERVICE_NAME)]
    return statuses == ["SERVING", "SERVING"]


async def not_serving(picker: Picker) -> bool:
    statuses = [await picker.health(s) for s in ("readiness", SERVICE_NAME, "liveness")]
    return statuses == ["NOT_SERVING", "NOT_SERVING", "SERVING"]


async def wait_one_leader(pickers: list[Picker], within: float) -> Picker:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        leaders = [p for p in pickers if await serving(p)]
        if len(leaders) == 1:
            return leaders[0]
        assert len(leaders) <= 1, "two replicas serve at once"
        await asyncio.sleep(0.05)
    raise AssertionError(f"no single leader after {within}s")


async def process_stream_code(picker: Picker) -> grpc.StatusCode:
    """Open one ext_proc stream with a header-only GET; the status it ends with."""
    request = pb.ProcessingRequest()
    request.request_headers.end_of_stream = True
    async with grpc.aio.insecure_channel(f"127.0.0.1:{picker.ports['grpc']}") as channel:
        call = channel.stream_stream(
            f"/{SERVICE_NAME}/Process",
            request_serializer=pb.ProcessingRequest.SerializeToString,
            response_deserializer=pb.ProcessingResponse.FromString,
        )
        try:
            replies = [r async for r in call(iter([request]), timeout=3.0)]
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        assert replies, "the leader answered nothing"
        return grpc.StatusCode.OK


def seed(apiserver: FakeApiServer) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put("pods", make_pod("p1", "127.0.0.1"))
    apiserver.put("inferencemodels", make_model("m1", "chat"))


async def test_exactly_one_replica_serves_and_sigkill_hands_over(
    apiserver: FakeApiServer, start_picker: StartPicker
) -> None:
    seed(apiserver)
    flags = ("--lease-duration", f"{LEASE_S:g}", "--secure-serving=false")
    a, b = await asyncio.gather(start_picker(*flags, name="a"), start_picker(*flags, name="b"))

    leader = await wait_one_leader([a, b], within=10)
    standby = b if leader is a else a
    assert await not_serving(standby)
    # Stable: through several renewals, still exactly one.
    for _ in range(10):
        assert await serving(leader) and await not_serving(standby)
        await asyncio.sleep(0.1)
    assert await process_stream_code(leader) == grpc.StatusCode.OK
    assert await process_stream_code(standby) == grpc.StatusCode.UNAVAILABLE
    holder = apiserver.get("leases", LEASE)
    assert holder is not None

    leader.proc.signal(signal.SIGKILL)
    killed = time.monotonic()
    await eventually(lambda: not leader.proc.alive(), what="leader dead")
    deadline = killed + LEASE_S + HANDOVER_MARGIN_S + 2  # fail late, assert the bound below
    while not await serving(standby):
        assert time.monotonic() < deadline, "standby never took over"
        await asyncio.sleep(0.05)
    handover = time.monotonic() - killed
    print(f"handover after SIGKILL: {handover:.2f}s (lease {LEASE_S:g}s)")
    assert handover < LEASE_S + HANDOVER_MARGIN_S
    assert await process_stream_code(standby) == grpc.StatusCode.OK
    lease = apiserver.get("leases", LEASE)
    assert lease is not None and lease["spec"]["leaseTransitions"] >= 1


async def test_graceful_shutdown_releases_the_lease(
    apiserver: FakeApiServer, start_picker: StartPicker
) -> None:
    seed(apiserver)
    # A long lease: only the release on SIGTERM can make the handover fast.
    flags = ("--lease-duration", "30", "--secure-serving=false")
    a, b = await asyncio.gather(start_picker(*flags, name="a"), start_picker(*flags, name="b"))
    leader = await wait_one_leader([a, b], within=10)
    standby = b if leader is a else a
    stopped = time.monotonic()
    await asyncio.to_thread(leader.proc.stop, 10.0)
    while not await serving(standby):
        assert time.monotonic() - stopped < 10, "standby never took over"
        await asyncio.sleep(0.05)
    handover = time.monotonic() - stopped
    print(f"handover after SIGTERM: {handover:.2f}s (lease 30s)")
    assert handover < 5.0
