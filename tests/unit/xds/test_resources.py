"""Translation of a static config into clusters, endpoints and the route, per cluster mode."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import ExtProcPerRoute
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import HttpProtocolOptions

from extproc.envoyconf.ads import ClusterMode
from extproc.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    HTTP_OPTIONS_KEY,
    ROUTE_TYPE,
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
    assert set(resources) == {CLUSTER_TYPE, ROUTE_TYPE}
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


def _route(resources: dict[str, Any]) -> RouteConfiguration:
    (name, packed), *_ = resources[ROUTE_TYPE].items()
    route = packed.unpack()
    assert isinstance(route, RouteConfiguration) and name == route.name == "inference"
    return route


@pytest.mark.parametrize(
    ("mode", "cluster", "header"),
    [
        ("pool", "inference-pool", None),
        ("per-endpoint", None, "x-gateway-destination-endpoint"),
        ("fail-open", "inference-pool", None),
    ],
)
def test_every_mode_serves_the_listeners_route(
    mode: ClusterMode, cluster: str | None, header: str | None
) -> None:
    (host,) = _route(build_resources(make_config("10.0.0.1:8000"), mode)).virtual_hosts
    assert host.domains == ["*"]
    (route,) = host.routes
    assert route.match is not None and route.match.prefix == "/"
    assert route.route is not None
    assert (route.route.cluster, route.route.cluster_header) == (cluster, header)
    assert route.route.timeout == datetime.timedelta(seconds=600)
    # A silent non-streaming completion must not meet Envoy's 300 s stream idle timeout first.
    assert route.route.idle_timeout == datetime.timedelta(seconds=600)


@pytest.mark.parametrize(
    ("mode", "failure_mode", "allow"),
    [
        ("fail-open", "FailOpen", True),
        ("fail-open", "FailClose", False),
        ("fail-open", None, False),  # the CRD's default
        # Without the override_host cluster a request needs the picker's destination anyway.
        ("pool", "FailOpen", False),
        ("per-endpoint", "FailOpen", False),
    ],
)
def test_the_routes_ext_proc_failure_mode_follows_the_pool(
    mode: ClusterMode, failure_mode: str | None, allow: bool
) -> None:
    cfg = make_config("10.0.0.1:8000", failure_mode=failure_mode)
    (route,) = _route(build_resources(cfg, mode)).virtual_hosts[0].routes
    per_route = route.typed_per_filter_config["envoy.filters.http.ext_proc"].unpack()
    assert isinstance(per_route, ExtProcPerRoute) and per_route.overrides is not None
    assert per_route.overrides.failure_mode_allow is allow


def test_the_route_timeout_is_configurable() -> None:
    resources = build_resources(make_config("10.0.0.1:8000"), "pool", route_timeout_s=3600)
    (route,) = _route(resources).virtual_hosts[0].routes
    assert route.route is not None and route.route.timeout == datetime.timedelta(hours=1)
    assert route.route.idle_timeout == datetime.timedelta(hours=1)
