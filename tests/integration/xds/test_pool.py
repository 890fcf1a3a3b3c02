"""Pool mode: one ORIGINAL_DST cluster whose thresholds follow the policy file at runtime."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.xds.harness import (
    OVERFLOW_BODY,
    Background,
    Envoy,
    XdsStack,
    is_overflow,
    send,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
POOL = "inference-pool"
LONG = 100  # tokens: ~2.3 s at speed 1, long enough to hold a slot while others arrive


@pytest.fixture(scope="module")
def stack() -> Iterator[XdsStack]:
    with XdsStack(pods=2, mode="pool") as s:
        s.start_sim()
        s.write_config(maxParallelRequests=1, maxPendingRequests=1)
        s.start_picker()
        s.start_xds()
        yield s


@pytest.fixture(scope="module")
def envoy(stack: XdsStack) -> Envoy:
    envoy = stack.start_envoy()
    wait_until(lambda: envoy.max_requests(POOL) == 1, 15, "pool cluster from CDS")
    return envoy


def _active(envoy: Envoy) -> int:
    return envoy.stat(f"cluster.{POOL}.upstream_rq_active")


def _fill(envoy: Envoy, n: int) -> list[Background]:
    """Start `n` long requests one after another, each in flight before the next starts."""
    held = []
    for i in range(n):
        held.append(Background(envoy.url, LONG))
        wait_until(lambda i=i: _active(envoy) >= i + 1, 10, f"request {i + 1} in flight")
    return held


def test_raising_max_parallel_requests_applies_without_restart(
    stack: XdsStack, envoy: Envoy, record_property: pytest.RecordProperty
) -> None:
    pid = envoy.proc.proc.pid
    # maxParallelRequests 1: the second concurrent request overflows.
    held = _fill(envoy, 1)
    second = send(envoy.url)
    assert is_overflow(second), second
    assert second.body == OVERFLOW_BODY
    assert held[0].result().status == 200

    written = stack.write_config(maxParallelRequests=3, maxPendingRequests=1)
    wait_until(lambda: envoy.max_requests(POOL) == 3, 10, "max_requests 3 in Envoy")
    delay = time.monotonic() - written
    record_property("xds_update_delay_s", round(delay, 3))
    print(f"policy file write -> Envoy max_requests=3: {delay * 1000:.0f} ms")
    assert delay <= 1.0

    held = _fill(envoy, 3)
    fourth = send(envoy.url)
    assert is_overflow(fourth), fourth
    results = [h.result() for h in held]
    assert [r.status for r in results] == [200, 200, 200]
    assert {r.headers["x-inference-pod"] for r in results} <= {e.name for e in stack.endpoints}
    assert envoy.proc.alive() and envoy.proc.proc.pid == pid  # the same Envoy, no restart
    assert envoy.stat(f"cluster.{POOL}.upstream_rq_active_overflow") >= 2


def test_invalid_policy_is_rejected_and_last_good_stays(stack: XdsStack, envoy: Envoy) -> None:
    assert envoy.max_requests(POOL) == 3
    assert stack.xds is not None
    stack.write_config(maxParallelRequests=-2, maxPendingRequests=1)
    m = stack.xds.wait_for(r"event=config_rejected .*", 5)
    assert "BackendTrafficPolicy/pool-breaker" in m.group(0)
    assert "circuitBreaker.maxParallelRequests" in m.group(0)
    assert "below the minimum 0" in m.group(0)
    time.sleep(0.5)
    assert envoy.max_requests(POOL) == 3
    assert send(envoy.url).status == 200
    # A good file afterwards is applied again.
    stack.write_config(maxParallelRequests=2, maxPendingRequests=1)
    wait_until(lambda: envoy.max_requests(POOL) == 2, 5, "max_requests 2")
