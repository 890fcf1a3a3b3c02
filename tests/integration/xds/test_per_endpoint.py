"""Per-endpoint mode: one cluster per pod, so the breaker limits requests per pod; pod churn
updates only the clusters that changed (the others keep their breaker counters)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.xds.harness import Background, Envoy, XdsStack, is_overflow, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
LONG = 150  # tokens: ~3.5 s at speed 1


@pytest.fixture(scope="module")
def stack() -> Iterator[XdsStack]:
    with XdsStack(pods=3, mode="per-endpoint") as s:
        s.start_sim()
        # The picker and Envoy start with pods 0 and 1; pod 2 joins (and 1 leaves) later.
        s.write_config(s.endpoints[:2], maxParallelRequests=1, maxPendingRequests=1)
        s.start_picker(extra=("--clear-route-cache",))
        s.start_xds()
        yield s


@pytest.fixture(scope="module")
def envoy(stack: XdsStack) -> Envoy:
    envoy = stack.start_envoy()
    addresses = {e.address for e in stack.endpoints[:2]}
    wait_until(lambda: set(envoy.clusters()) == addresses, 15, "per-endpoint clusters")
    return envoy


def _stat(envoy: Envoy, address: str, name: str) -> int:
    # Envoy writes a cluster named 127.0.0.1:8000 as 127.0.0.1_8000 in stat names.
    return envoy.stat(f"cluster.{address.replace(':', '_')}.{name}")


def _active(envoy: Envoy, address: str) -> int:
    return _stat(envoy, address, "upstream_rq_active")


def _remaining(envoy: Envoy, address: str) -> int:
    return _stat(envoy, address, "circuit_breakers.default.remaining_rq")


def test_second_request_to_a_busy_pod_overflows_while_the_other_serves(
    stack: XdsStack, envoy: Envoy
) -> None:
    a, b = (e.address for e in stack.endpoints[:2])
    first = Background(envoy.url, LONG)
    wait_until(lambda: _active(envoy, a) + _active(envoy, b) == 1, 10, "first in flight")
    second = Background(envoy.url, LONG)
    wait_until(lambda: _active(envoy, a) == 1 and _active(envoy, b) == 1, 10, "one per pod")
    # Both pods are at their limit of 1: the picker (least in-flight) sends the third request
    # to one of them and that pod's breaker overflows.
    third = Background(envoy.url, 2).result()
    assert is_overflow(third), third
    served = {first.result().headers["x-inference-pod"], second.result().headers["x-inference-pod"]}
    assert served == {e.name for e in stack.endpoints[:2]}
    overflows = sum(_stat(envoy, x, "upstream_rq_active_overflow") for x in (a, b))
    assert overflows == 1


def test_pod_churn_keeps_the_other_pods_breaker_counters(stack: XdsStack, envoy: Envoy) -> None:
    ep0, ep1, ep2 = stack.endpoints
    a, b, c = ep0.address, ep1.address, ep2.address
    versions = envoy.clusters()
    modified = envoy.stat("cluster_manager.cluster_modified")
    # Hold one request on each of the two pods.
    held = [Background(envoy.url, LONG)]
    wait_until(lambda: _active(envoy, a) + _active(envoy, b) == 1, 10, "first in flight")
    held.append(Background(envoy.url, LONG))
    wait_until(lambda: _active(envoy, a) == 1 and _active(envoy, b) == 1, 10, "one per pod")
    assert _remaining(envoy, a) == 0

    # Pod 2 joins.
    stack.write_config([ep0, ep1, ep2], maxParallelRequests=1, maxPendingRequests=1)
    wait_until(lambda: c in envoy.clusters(), 5, "cluster of the new pod")
    after_add = envoy.clusters()
    assert after_add[a] == versions[a] and after_add[b] == versions[b]
    assert _active(envoy, a) == 1 and _remaining(envoy, a) == 0  # not reset
    assert _active(envoy, b) == 1 and _remaining(envoy, b) == 0
    assert _remaining(envoy, c) == 1

    # Pod 1 leaves while its request is still in flight.
    stack.write_config([ep0, ep2], maxParallelRequests=1, maxPendingRequests=1)
    wait_until(lambda: b not in envoy.clusters(), 5, "cluster of the removed pod gone")
    assert envoy.clusters()[a] == versions[a]
    assert _active(envoy, a) == 1 and _remaining(envoy, a) == 0
    assert envoy.stat("cluster_manager.cluster_modified") == modified  # none re-sent
    assert [h.result().status for h in held] == [200, 200]
    wait_until(lambda: _remaining(envoy, a) == 1, 5, "slot of pod 0 released")
