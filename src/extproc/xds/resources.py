"""Translate the pool's endpoints and BackendTrafficPolicy into xDS resources.

The input is a static config (`build_resources`) or the state watched in Kubernetes
(`resources_for`, via `extproc.xds.kubernetes`); both go through the same translation.

The resources are typed Envoy messages (`envoy_data_plane`, betterproto2) packed in
`google.protobuf.Any`. Building is deterministic: the same input gives the same bytes, which is
what lets the cache tell a changed cluster from an unchanged one (Envoy resets the circuit
breaker counters of a cluster it receives again with a different configuration).

Cluster modes (`extproc.envoyconf.ads.ClusterMode`):

- ``pool``: one ORIGINAL_DST cluster ``inference-pool`` (the static bootstrap's shape); the
  thresholds are pool-wide.
- ``per-endpoint``: one STATIC cluster per endpoint, named ``ip:port``, each with the thresholds
  (so ``maxParallelRequests: 1`` means one request in flight per pod).
- ``fail-open``: one EDS cluster ``inference-pool`` balanced by the ``override_host`` policy (the
  picker's header or ``envoy.lb`` metadata, else round robin), plus its ClusterLoadAssignment.

Every mode also serves the listener's route over RDS: the route to the mode's cluster(s), with
the ext_proc filter's ``failure_mode_allow`` overridden from the InferencePool's
``extensionRef.failureMode``, so that a pool edit changes what Envoy does with the picker down
without a new bootstrap.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    Cluster,
    ClusterDiscoveryType,
    ClusterEdsClusterConfig,
    ClusterLbPolicy,
    ClusterOriginalDstLbConfig,
    LoadBalancingPolicy,
    LoadBalancingPolicyPolicy,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
    Http1ProtocolOptions,
    RoutingPriority,
    SocketAddress,
    TypedExtensionConfig,
)
from envoy_data_plane.envoy.config.core.v3 import (
    HttpProtocolOptions as CoreHttpProtocolOptions,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    Endpoint as EnvoyEndpoint,
)
from envoy_data_plane.envoy.config.route.v3 import (
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ExtProcOverrides,
    ExtProcPerRoute,
)
from envoy_data_plane.envoy.extensions.load_balancing_policies.override_host.v3 import (
    OverrideHost,
    OverrideHostOverrideHostSource,
)
from envoy_data_plane.envoy.extensions.load_balancing_policies.round_robin.v3 import RoundRobin
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.metadata.v3 import MetadataKey, MetadataKeyPathSegment
from envoy_data_plane.google.protobuf import Any

from extproc.api.v1alpha2 import FailureMode, InferencePool
from extproc.config.static import StaticConfig
from extproc.endpoints import Endpoint
from extproc.envoyconf.ads import EXT_PROC_FILTER, ClusterMode
from extproc.envoyconf.bootstrap import (
    DESTINATION_HEADER,
    POOL_CLUSTER,
    ROUTE_NAME,
    ROUTE_TIMEOUT_S,
    CircuitBreaker,
)
from extproc.envoyconf.policy import BackendTrafficPolicy, CircuitBreakerSpec, policy_for_pool
from extproc.logs import get_logger

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# Send order: clusters before their endpoints, routes after the clusters they name (ADS
# ordering, make-before-break).
TYPE_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE)
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CONNECT_TIMEOUT = datetime.timedelta(seconds=5)
LB_METADATA_NAMESPACE = "envoy.lb"

Resources = dict[str, dict[str, Any]]
"""type URL → resource name → the packed resource."""

log = get_logger(__name__)


def build_resources(
    config: StaticConfig, mode: ClusterMode, *, route_timeout_s: int = ROUTE_TIMEOUT_S
) -> Resources:
    """Every resource type of `mode` (an empty dict for a type means "no resources")."""
    policy = policy_for_pool(config.policies, config.pool.name)
    return resources_for(
        breaker_spec(policy), config.endpoints, mode, failure_mode(config.pool),
        route_timeout_s=route_timeout_s,
    )  # fmt: skip


def failure_mode(pool: InferencePool | None) -> FailureMode:
    """The pool's `extensionRef.failureMode`; FailClose without a pool or an extensionRef."""
    ref = pool.extension_ref if pool is not None else None
    return ref.failure_mode if ref is not None else "FailClose"


def breaker_spec(policy: BackendTrafficPolicy | None) -> CircuitBreakerSpec:
    """The governing policy's breaker; no policy means Envoy's defaults."""
    return policy.circuit_breaker if policy is not None else CircuitBreakerSpec()


def resources_for(
    spec: CircuitBreakerSpec,
    endpoints: tuple[Endpoint, ...],
    mode: ClusterMode,
    failure: FailureMode = "FailClose",
    *,
    route_timeout_s: int = ROUTE_TIMEOUT_S,
) -> Resources:
    """The resources of `mode` for these endpoints, thresholds and failure mode (file and
    Kubernetes modes); `route_timeout_s` bounds each upstream request (completions are long)."""
    routes = {ROUTE_NAME: Any.pack(route_configuration(mode, failure, route_timeout_s))}
    if mode == "pool":
        return {CLUSTER_TYPE: _named([pool_cluster(spec)]), ROUTE_TYPE: routes}
    if mode == "per-endpoint":
        clusters = [endpoint_cluster(e, spec) for e in endpoints]
        return {CLUSTER_TYPE: _named(clusters), ROUTE_TYPE: routes}
    assignment = load_assignment(POOL_CLUSTER, endpoints)
    return {
        CLUSTER_TYPE: _named([fail_open_cluster(spec)]),
        ENDPOINT_TYPE: {POOL_CLUSTER: Any.pack(assignment)},
        ROUTE_TYPE: routes,
    }


def route_configuration(
    mode: ClusterMode, failure: FailureMode, timeout_s: int = ROUTE_TIMEOUT_S
) -> RouteConfiguration:
    """Every request to the mode's cluster(s); the ext_proc filter may let requests through
    without the picker (`failure_mode_allow`) only where the cluster can balance on its own."""
    # The idle timeout too (see `extproc.envoyconf.bootstrap._routes`): Envoy's default of 300 s
    # would end a silent non-streaming completion before the route's timeout.
    limit = datetime.timedelta(seconds=timeout_s)
    action = RouteAction(timeout=limit, idle_timeout=limit)
    if mode == "per-endpoint":
        action.cluster_header = DESTINATION_HEADER  # chosen again after the picker's answer
    else:
        action.cluster = POOL_CLUSTER
    allow = failure == "FailOpen" and mode == "fail-open"
    if failure == "FailOpen" and not allow:
        # The pool and per-endpoint clusters need the picker's destination: without it a
        # request would fail anyway, with a less clear error than the filter's own.
        log.warning("fail_open_needs_fail_open_mode", mode=mode, applied="FailClose")
    overrides = ExtProcPerRoute(overrides=ExtProcOverrides(failure_mode_allow=allow))
    route = Route(
        match=RouteMatch(prefix="/"),
        route=action,
        typed_per_filter_config={EXT_PROC_FILTER: Any.pack(overrides)},
    )
    host = VirtualHost(name=ROUTE_NAME, domains=["*"], routes=[route])
    return RouteConfiguration(name=ROUTE_NAME, virtual_hosts=[host])


def pool_cluster(spec: CircuitBreakerSpec) -> Cluster:
    cluster = Cluster(
        name=POOL_CLUSTER,
        type=ClusterDiscoveryType.ORIGINAL_DST,
        lb_policy=ClusterLbPolicy.CLUSTER_PROVIDED,
        connect_timeout=CONNECT_TIMEOUT,
        original_dst_lb_config=ClusterOriginalDstLbConfig(
            use_http_header=True, http_header_name=DESTINATION_HEADER
        ),
    )
    return _with_policy(cluster, spec)


def endpoint_cluster(endpoint: Endpoint, spec: CircuitBreakerSpec) -> Cluster:
    cluster = Cluster(
        name=endpoint.address,
        type=ClusterDiscoveryType.STATIC,
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        connect_timeout=CONNECT_TIMEOUT,
        load_assignment=load_assignment(endpoint.address, (endpoint,)),
    )
    return _with_policy(cluster, spec)


def fail_open_cluster(spec: CircuitBreakerSpec) -> Cluster:
    """EDS members; the picker's destination when it names a member, else round robin."""
    override = OverrideHost(
        override_host_sources=[
            OverrideHostOverrideHostSource(header=DESTINATION_HEADER),
            OverrideHostOverrideHostSource(
                metadata=MetadataKey(
                    key=LB_METADATA_NAMESPACE,
                    path=[MetadataKeyPathSegment(key=DESTINATION_HEADER)],
                )
            ),
        ],
        fallback_policy=_policy("envoy.load_balancing_policies.round_robin", RoundRobin()),
    )
    cluster = Cluster(
        name=POOL_CLUSTER,
        type=ClusterDiscoveryType.EDS,
        eds_cluster_config=ClusterEdsClusterConfig(
            eds_config=ConfigSource(
                ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3
            ),
            service_name=POOL_CLUSTER,
        ),
        connect_timeout=CONNECT_TIMEOUT,
        load_balancing_policy=_policy("envoy.load_balancing_policies.override_host", override),
    )
    return _with_policy(cluster, spec)


def load_assignment(name: str, endpoints: tuple[Endpoint, ...]) -> ClusterLoadAssignment:
    return ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            LocalityLbEndpoints(
                lb_endpoints=[
                    LbEndpoint(
                        endpoint=EnvoyEndpoint(
                            address=Address(
                                socket_address=SocketAddress(address=e.ip, port_value=e.port)
                            )
                        )
                    )
                    for e in endpoints
                ]
            )
        ],
    )


def thresholds(b: CircuitBreaker) -> CircuitBreakers:
    return CircuitBreakers(
        thresholds=[
            CircuitBreakersThresholds(
                priority=RoutingPriority.DEFAULT,
                max_connections=b.max_connections,
                max_pending_requests=b.max_pending_requests,
                max_requests=b.max_requests,
                max_retries=b.max_retries,
                # Publishes circuit_breakers.default.remaining_* gauges.
                track_remaining=True,
            )
        ]
    )


def _with_policy(cluster: Cluster, spec: CircuitBreakerSpec) -> Cluster:
    cluster.circuit_breakers = thresholds(spec.thresholds())
    if spec.max_requests_per_connection is not None:
        options = HttpProtocolOptions(
            common_http_protocol_options=CoreHttpProtocolOptions(
                max_requests_per_connection=spec.max_requests_per_connection
            ),
            explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                http_protocol_options=Http1ProtocolOptions()
            ),
        )
        cluster.typed_extension_protocol_options = {HTTP_OPTIONS_KEY: Any.pack(options)}
    return cluster


def _policy(name: str, config: object) -> LoadBalancingPolicy:
    packed = Any.pack(config)  # type: ignore[arg-type]
    return LoadBalancingPolicy(
        policies=[
            LoadBalancingPolicyPolicy(
                typed_extension_config=TypedExtensionConfig(name=name, typed_config=packed)
            )
        ]
    )


def _named(clusters: list[Cluster]) -> dict[str, Any]:
    return {c.name: Any.pack(c) for c in clusters}


def serialized(resources: Mapping[str, Any]) -> dict[str, bytes]:
    """The wire bytes of each resource (what "unchanged" is judged on)."""
    return {name: bytes(r) for name, r in resources.items()}
