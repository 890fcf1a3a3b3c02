"""Leader election against a fake API server that can stall or conflict one replica's calls."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from extproc.k8s.leader import LeaderElector
from extproc.k8s.settings import LeaderElectionSettings
from tests.unit.k8s.builders import eventually
from tests.unit.k8s.gated_apiserver import GatedApiServer

LEASE = "pool-epp-leader"


@pytest.fixture
async def gated() -> AsyncIterator[GatedApiServer]:
    server = GatedApiServer()
    await server.start()
    yield server
    await server.stop()


def _elector(api: object, identity: str, lease_duration: float) -> LeaderElector:
    settings = LeaderElectionSettings(
        lease_name=LEASE, identity=identity, lease_duration=lease_duration
    )
    return LeaderElector(api, "default", settings)


async def test_a_leader_whose_calls_hang_steps_down_before_the_standby_takes_over(
    gated: GatedApiServer, tmp_path: Path
) -> None:
    api_a, api_b = gated.client(tmp_path, "token-a"), gated.client(tmp_path, "token-b")
    a, b = _elector(api_a, "a", 2.0), _elector(api_b, "b", 2.0)
    try:
        await a.start()
        await eventually(lambda: a.is_leader, what="a leads")
        await b.start()
        await asyncio.sleep(0.3)  # b has read the Lease a holds
        assert not b.is_leader
        gated.hang_tokens.add("token-a")  # a's API calls get no answer now
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not b.is_leader:
            assert not a.is_leader or not b.is_leader, "two leaders at once"
            await asyncio.sleep(0.005)
        assert b.is_leader and not a.is_leader
    finally:
        gated.unhang()
        await b.stop()
        await a.stop()
        api_a.close()
        api_b.close()


async def test_the_release_on_stop_is_not_undone_by_a_round_in_flight(
    gated: GatedApiServer, tmp_path: Path
) -> None:
    api = gated.client(tmp_path, "token-a")
    a = _elector(api, "a", 15.0)
    idle = threading.Event()  # when the worker thread's round has finished
    idle.set()
    attempt = a._attempt

    def observed_attempt() -> bool | None:
        idle.clear()
        try:
            return attempt()
        finally:
            idle.set()

    a._attempt = observed_attempt  # type: ignore[method-assign]
    try:
        await a.start()
        await eventually(lambda: a.is_leader, what="a leads")
        reached, release = asyncio.Event(), asyncio.Event()
        gated.gates["token-a"] = (reached, release)  # the next renewal's GET stalls
        await asyncio.wait_for(reached.wait(), 10)
        stopping = asyncio.create_task(a.stop())  # SIGTERM while the round is in flight
        await asyncio.wait({stopping}, timeout=1.0)
        release.set()
        await asyncio.wait_for(stopping, 10)
        await eventually(idle.is_set, within=10, what="the round in flight finished")
        lease = gated.get("leases", LEASE)
        assert lease is not None and lease["spec"]["holderIdentity"] == ""
    finally:
        await a.stop()
        api.close()


async def test_a_conflict_on_its_own_renewal_does_not_make_the_leader_step_down(
    gated: GatedApiServer, tmp_path: Path
) -> None:
    # Another field of the Lease was edited between our read and our write: 409. The Lease
    # still names us; stepping down would leave the Service without a Ready picker.
    api = gated.client(tmp_path, "token-a")
    # Renewals every 1.5 s against a 4 s deadline: room for a slow machine between the last
    # good renewal, the conflict and the one after it.
    a = _elector(api, "a", 6.0)
    changes: list[bool] = []
    a.on_change(lambda: changes.append(a.is_leader))
    try:
        await a.start()
        await eventually(lambda: a.is_leader, what="a leads")
        puts = gated.requests[("leases", "PUT")]
        gated.conflict_next_put = 1
        await eventually(
            lambda: gated.requests[("leases", "PUT")] >= puts + 2, within=10,
            what="the conflicting renewal and the next one",
        )  # fmt: skip
        assert changes == [True]
    finally:
        await a.stop()
        api.close()


async def test_stop_ends_campaigning_when_a_round_finishes_as_it_is_cancelled(
    gated: GatedApiServer, tmp_path: Path
) -> None:
    # Python 3.11's wait_for swallows a cancellation that arrives as the call it waits for
    # completes; the campaign loop went on and `stop` (SIGTERM) waited for it forever.
    api = gated.client(tmp_path, "token-a")
    a = _elector(api, "a", 2.0)
    round_done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    call = a._call

    def attempt_waits_for_the_test(fn: Callable[[], object]) -> asyncio.Future[Any]:
        return round_done if fn == a._attempt else call(fn)

    a._call = attempt_waits_for_the_test  # type: ignore[method-assign]
    try:
        await a.start()
        await asyncio.sleep(0.05)  # the campaign now waits for its round
        round_done.set_result(True)  # the round finishes in the same loop iteration...
        async with asyncio.timeout(5):
            await a.stop()  # ...as stop cancels the campaign
    finally:
        api.close()
