"""Translation of a static config into clusters and endpoints, per cluster mode."""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import HttpProtocolOptions

from extproc.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    HTTP_OPTIONS_KEY,
    build_resources,
    serialized,
)

from .builders import make_config


def _clusters(resources: dict[str, Any]) -> dict[str, Cluster]:
    out = {}
    for name, packed in resources[CLUSTER_TYPE].items():
        cluster = packed.unpack()
        assert isinstance(cluster, Cluster)
        out[name] = cluster
    return out


def test_pool_mode_one_original_dst_cluster_with_policy_thresholds() -> None:
    cfg = make_config("10.0.0.1:8000", "10.0.0.2:8000", maxParallelRequests=3, maxPendingRequests=1)
    resources = build_resources(cfg, "pool")
    assert set(resources) == {CLUSTER_TYPE}
    (cluster,) = _clusters(resources).values()
    assert cluster.name == "inference-pool"
    assert cluster.type == ClusterDiscoveryType.ORIGINAL_DST
    assert cluster.original_dst_lb_config is not None
    assert cluster.original_dst_lb_config.http_header_name == "x-gateway-destination-endpoint"
    assert cluster.circuit_breakers is not None
    (t,) = cluster.circuit_breakers.thresholds
    assert (t.max_requests, t.max_pending_requests, t.max_connections, t.max_retries) == (
        3, 1, 1024, 3,
    )  # fmt: skip
    assert not cluster.typed_extension_protocol_options


def test_no_policy_means_envoy_defaults() -> None:
    (cluster,) = _clusters(build_resources(make_config("10.0.0.1:8000"), "pool")).values()
    assert cluster.circuit_breakers is not None
    assert cluster.circuit_breakers.thresholds[0].max_requests == 1024


def test_max_requests_per_connection_goes_to_http_protocol_options() -> None:
    cfg = make_config("10.0.0.1:8000", maxRequestsPerConnection=7)
    (cluster,) = _clusters(build_resources(cfg, "pool")).values()
    options = cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].unpack()
    assert isinstance(options, HttpProtocolOptions)
    assert options.common_http_protocol_options is not None
    assert options.common_http_protocol_options.max_requests_per_connection == 7


def test_per_endpoint_mode_one_static_cluster_per_address() -> None:
    cfg = make_config("10.0.0.1:8000", "10.0.0.2:9000", maxParallelRequests=1)
    clusters = _clusters(build_resources(cfg, "per-endpoint"))
    assert set(clusters) == {"10.0.0.1:8000", "10.0.0.2:9000"}
    c = clusters["10.0.0.2:9000"]
    assert c.type == ClusterDiscoveryType.STATIC
    assert c.circuit_breakers is not None
    assert c.circuit_breakers.thresholds[0].max_requests == 1
    assert c.load_assignment is not None
    sock = c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address  # type: ignore[union-attr]
    assert (sock.address, sock.port_value) == ("10.0.0.2", 9000)  # type: ignore[union-attr]


def test_per_endpoint_churn_keeps_unchanged_clusters_byte_identical() -> None:
    before = build_resources(
        make_config("10.0.0.1:8000", "10.0.0.2:8000", maxParallelRequests=1), "per-endpoint"
    )
    after = build_resources(
        make_config("10.0.0.1:8000", "10.0.0.3:8000", maxParallelRequests=1), "per-endpoint"
    )
    old, new = serialized(before[CLUSTER_TYPE]), serialized(after[CLUSTER_TYPE])
    assert old["10.0.0.1:8000"] == new["10.0.0.1:8000"]
    assert "10.0.0.2:8000" not in new and "10.0.0.3:8000" in new


def test_fail_open_mode_eds_cluster_with_override_host_and_assignment() -> None:
    cfg = make_config("10.0.0.1:8000", "10.0.0.2:8000")
    resources = build_resources(cfg, "fail-open")
    (cluster,) = _clusters(resources).values()
    assert cluster.type == ClusterDiscoveryType.EDS
    assert cluster.eds_cluster_config is not None
    assert cluster.eds_cluster_config.service_name == "inference-pool"
    assert cluster.load_balancing_policy is not None
    policy = cluster.load_balancing_policy.policies[0].typed_extension_config
    assert policy is not None and policy.name == "envoy.load_balancing_policies.override_host"
    override = policy.typed_config.unpack()  # type: ignore[union-attr]
    d = override.to_dict()  # type: ignore[union-attr]
    assert d["overrideHostSources"][0] == {"header": "x-gateway-destination-endpoint"}
    assert d["overrideHostSources"][1]["metadata"]["key"] == "envoy.lb"
    assert "round_robin" in d["fallbackPolicy"]["policies"][0]["typedExtensionConfig"]["name"]
    cla = resources[ENDPOINT_TYPE]["inference-pool"].unpack()
    assert isinstance(cla, ClusterLoadAssignment)
    assert len(cla.endpoints[0].lb_endpoints) == 2


def test_building_is_deterministic() -> None:
    cfg = make_config("10.0.0.1:8000", maxParallelRequests=2, maxRequestsPerConnection=3)
    for mode in ("pool", "per-endpoint", "fail-open"):
        a, b = build_resources(cfg, mode), build_resources(cfg, mode)  # type: ignore[arg-type]
        assert {t: serialized(r) for t, r in a.items()} == {t: serialized(r) for t, r in b.items()}
