"""endpoint-capacity-filter with per-endpoint clusters: the picker steers away from full pods."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.integration.xds.harness import Background, Envoy, XdsStack, send, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def stack() -> Iterator[XdsStack]:
    with XdsStack(pods=2, mode="per-endpoint") as s:
        epp = s.dir / "epp.yaml"
        epp.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
                    "kind": "EndpointPickerConfig",
                    "plugins": [
                        # The limit comes from the same BackendTrafficPolicy Envoy enforces.
                        {
                            "type": "endpoint-capacity-filter",
                            "parameters": {"staticConfig": str(s.config_path)},
                        },
                        {"type": "random-picker"},
                    ],
                    "schedulingProfiles": [
                        {
                            "name": "default",
                            "plugins": [
                                {"pluginRef": "endpoint-capacity-filter"},
                                {"pluginRef": "random-picker"},
                            ],
                        },
                    ],
                }
            )
        )
        s.picker_args = ("--config-file", str(epp), "--clear-route-cache")
        s.start_sim()
        s.write_config(maxParallelRequests=1, maxPendingRequests=1)
        s.start_picker()
        s.start_xds()
        yield s


def test_requests_avoid_the_pod_at_its_limit(stack: XdsStack) -> None:
    envoy: Envoy = stack.start_envoy()
    wait_until(lambda: len(envoy.clusters()) == 2, 15, "per-endpoint clusters")
    busy = Background(envoy.url, 150)
    stats = {e.address: f"cluster.{e.address.replace(':', '_')}.upstream_rq_active"
             for e in stack.endpoints}  # fmt: skip
    wait_until(lambda: sum(envoy.stat(s) for s in stats.values()) == 1, 10, "busy request")
    busy_address = next(a for a, s in stats.items() if envoy.stat(s) == 1)
    free_pod = next(e.name for e in stack.endpoints if e.address != busy_address)
    # A random picker alone would send half of these to the busy pod (503 overflow).
    for _ in range(8):
        resp = send(envoy.url)
        assert resp.status == 200, resp
        assert resp.headers["x-inference-pod"] == free_pod
    assert busy.result().status == 200
