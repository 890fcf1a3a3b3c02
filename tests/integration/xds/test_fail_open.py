"""Fail-open mode: an EDS cluster with the override_host policy honours the picker's choice and
falls back to round robin when the picker is down (FailOpen); FailClose keeps it mandatory. The
pool's failureMode reaches Envoy over RDS, so an edit applies without a new bootstrap."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.xds.harness import Envoy, XdsStack, send, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def stack() -> Iterator[XdsStack]:
    with XdsStack(pods=2, mode="fail-open", failure_mode="FailOpen") as s:
        s.start_sim()
        # Envoy's pool has both pods; the picker knows only pod 0, so its choice is visible.
        s.write_config()
        s.picker_config_path = s.dir / "picker.yaml"
        s.write_config(s.endpoints[:1], path=s.picker_config_path)
        s.start_picker()
        s.start_xds()
        yield s


def _pods(envoy: Envoy, n: int = 6) -> list[str]:
    out = []
    for _ in range(n):
        resp = send(envoy.url)
        assert resp.status == 200, resp
        out.append(resp.headers["x-inference-pod"])
    return out


def test_picker_down_fail_open_serves_fail_close_refuses_then_picker_returns(
    stack: XdsStack,
) -> None:
    envoy = stack.start_envoy()
    wait_until(lambda: "inference-pool" in envoy.clusters(), 15, "EDS cluster")
    wait_until(lambda: send(envoy.url).status == 200, 15, "pool endpoints and route")
    picked, other = stack.endpoints[0].name, stack.endpoints[1].name

    # The picker's destination is honoured.
    assert set(_pods(envoy)) == {picked}
    # The xDS server's metrics: one Envoy, which accepted the cluster, endpoints and route.
    assert stack.xds_metric("extproc_xds_streams") == 1
    for kind in ("Cluster", "ClusterLoadAssignment", "RouteConfiguration"):
        assert stack.xds_metric(f'extproc_xds_acks_total{{type="{kind}"}}') >= 1, kind
    assert stack.xds_metric("extproc_xds_nacks_total") == 0

    port = stack.picker_port
    stack.stop_picker()
    # FailOpen: Envoy's own balancing (round robin over the EDS members) serves.
    assert set(_pods(envoy)) == {picked, other}

    # The pool turns FailClose: the new route reaches Envoy and the picker is mandatory.
    stack.set_failure_mode("FailClose")
    written = stack.write_config()
    wait_until(lambda: 500 <= send(envoy.url).status < 600, 5, "FailClose applied", 0.05)
    print(f"failureMode FailClose applied after {time.monotonic() - written:.2f}s")
    statuses = {send(envoy.url).status for _ in range(3)}
    assert all(500 <= s < 600 for s in statuses), statuses

    # The picker comes back on the same port: its choices are honoured again.
    stack.start_picker(port=port)
    started = time.monotonic()
    wait_until(lambda: send(envoy.url).status == 200, 10, "serving again", 0.1)
    wait_until(lambda: set(_pods(envoy, 4)) == {picked}, 10, "picker honoured again", 0.1)
    print(f"picker back -> choices honoured after {time.monotonic() - started:.2f}s")

    # And back to FailOpen, for the tests that follow.
    stack.set_failure_mode("FailOpen")
    stack.write_config()


def test_policy_change_rewarms_the_eds_cluster_and_endpoint_churn_is_eds_only(
    stack: XdsStack,
) -> None:
    if stack.picker is None:
        stack.start_picker()
    envoy = stack.start_envoy()
    wait_until(lambda: send(envoy.url).status == 200, 15, "pool endpoints")
    assert envoy.max_requests("inference-pool") == 1024
    stack.write_config(maxParallelRequests=9)
    wait_until(lambda: envoy.max_requests("inference-pool") == 9, 5, "new thresholds")
    # The updated cluster warmed with its endpoints (EDS) and serves.
    wait_until(lambda: send(envoy.url).status == 200, 5, "serving after the CDS update")
    modified = envoy.stat("cluster_manager.cluster_modified")
    stack.write_config(stack.endpoints[1:], maxParallelRequests=9)
    stack.stop_picker()  # round robin now shows the EDS membership
    wait_until(
        lambda: {send(envoy.url).headers.get("x-inference-pod") for _ in range(4)}
        == {stack.endpoints[1].name}, 5, "EDS update", 0.1,
    )  # fmt: skip
    assert envoy.stat("cluster_manager.cluster_modified") == modified  # no CDS update
