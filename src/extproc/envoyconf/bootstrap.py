"""A static Envoy bootstrap: listener → ext_proc filter → ORIGINAL_DST pool cluster.

The pool cluster routes to the address in `x-gateway-destination-endpoint` and carries the
circuit-breaker thresholds (the scenario's are 1 pending and 1 parallel request). The same
builder writes the shipped files in `envoy/` (see `extproc.tools.gen_envoy`), the local stack's
config and the test fixtures' configs, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml

BodyMode = Literal["BUFFERED", "FULL_DUPLEX_STREAMED"]
POOL_CLUSTER = "inference-pool"
EXTPROC_CLUSTER = "extproc"
DESTINATION_HEADER = "x-gateway-destination-endpoint"
# The route configuration (and its virtual host); served over RDS by `extproc xds`.
ROUTE_NAME = "inference"
ROUTE_TIMEOUT_S = 600


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreaker:
    """Envoy `circuit_breakers.thresholds` for the pool cluster (Envoy's defaults otherwise)."""

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


SCENARIO_BREAKER = CircuitBreaker(max_pending_requests=1, max_requests=1)
EXTPROC_BREAKER = CircuitBreaker(
    max_connections=1_000_000, max_pending_requests=1_000_000, max_requests=1_000_000
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapParams:
    listen_address: str = "0.0.0.0"
    listen_port: int = 8081
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    # Where the picker listens; a host name makes the cluster STRICT_DNS (docker compose).
    extproc_host: str = "127.0.0.1"
    extproc_port: int = 9002
    body_mode: BodyMode = "BUFFERED"
    breaker: CircuitBreaker = SCENARIO_BREAKER
    # Per ext_proc message; exceeding it answers 504.
    message_timeout_ms: int = 5000
    # Upstream request timeout; completions can be long.
    route_timeout_s: int = ROUTE_TIMEOUT_S
    # Without the ext_proc filter: plain round-robin over `direct_endpoints` (benchmarks).
    direct_endpoints: tuple[tuple[str, int], ...] = ()


def build_bootstrap(p: BootstrapParams) -> dict[str, Any]:
    direct = bool(p.direct_endpoints)
    http_filters = [] if direct else [_strip_destination_filter(), _ext_proc_filter(p)]
    http_filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
            },
        }
    )
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "inference",
        "route_config": {
            "name": ROUTE_NAME,
            "virtual_hosts": [
                {
                    "name": ROUTE_NAME,
                    "domains": ["*"],
                    "routes": _routes(p),
                }
            ],
        },
        "http_filters": http_filters,
    }
    clusters = [_direct_pool_cluster(p) if direct else _pool_cluster(p)]
    if not direct:
        clusters.append(_extproc_cluster(p))
    return {
        "admin": {"address": _socket(p.admin_address, p.admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "inference",
                    "address": _socket(p.listen_address, p.listen_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


def render_bootstrap(p: BootstrapParams, header: str = "") -> str:
    text = yaml.safe_dump(build_bootstrap(p), sort_keys=False, width=100)
    return header + text


def _routes(p: BootstrapParams) -> list[dict[str, Any]]:
    # The idle timeout too: Envoy's default stream idle timeout (300 s) would end a completion
    # that sends nothing until it is done (`stream: false`) long before the route's timeout.
    timeout = f"{p.route_timeout_s}s"
    action = {"cluster": POOL_CLUSTER, "timeout": timeout, "idle_timeout": timeout}
    return [{"match": {"prefix": "/"}, "route": action}]


def _strip_destination_filter() -> dict[str, Any]:
    """Drop a client-sent destination header before anything reads it (clients never pick)."""
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": DESTINATION_HEADER}]},
        },
    }


def _processing_mode(p: BootstrapParams) -> dict[str, str]:
    full_duplex = p.body_mode == "FULL_DUPLEX_STREAMED"
    return {
        # Envoy's router picks the upstream host as soon as the request headers pass, so the
        # filter must hold them (SEND) until the picker has seen the body and decided.
        "request_header_mode": "SEND",
        "response_header_mode": "SEND",
        "request_body_mode": p.body_mode,
        "response_body_mode": "STREAMED",
        # FULL_DUPLEX_STREAMED requires trailers to be sent to the processor.
        "request_trailer_mode": "SEND" if full_duplex else "SKIP",
        "response_trailer_mode": "SKIP",
    }


def _ext_proc_filter(p: BootstrapParams) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": EXTPROC_CLUSTER}, "timeout": "10s"},
            "failure_mode_allow": False,
            "message_timeout": f"{p.message_timeout_ms / 1000:g}s",
            "processing_mode": _processing_mode(p),
            # Envoy drops dynamic metadata in namespaces it was not told to receive.
            "metadata_options": {"receiving_namespaces": {"untyped": ["envoy.lb"]}},
            "allow_mode_override": False,
        },
    }


def _thresholds(b: CircuitBreaker) -> dict[str, Any]:
    return {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": b.max_connections,
                "max_pending_requests": b.max_pending_requests,
                "max_requests": b.max_requests,
                "max_retries": b.max_retries,
            }
        ]
    }


def _pool_cluster(p: BootstrapParams) -> dict[str, Any]:
    return {
        "name": POOL_CLUSTER,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "5s",
        "original_dst_lb_config": {
            "use_http_header": True,
            "http_header_name": DESTINATION_HEADER,
        },
        "circuit_breakers": _thresholds(p.breaker),
    }


def _direct_pool_cluster(p: BootstrapParams) -> dict[str, Any]:
    return {
        "name": POOL_CLUSTER,
        "type": "STATIC",
        "lb_policy": "ROUND_ROBIN",
        "connect_timeout": "5s",
        "circuit_breakers": _thresholds(p.breaker),
        "load_assignment": _load_assignment(POOL_CLUSTER, p.direct_endpoints),
    }


def _extproc_cluster(p: BootstrapParams) -> dict[str, Any]:
    is_ip = p.extproc_host.replace(".", "").isdigit() or ":" in p.extproc_host
    return {
        "name": EXTPROC_CLUSTER,
        "type": "STATIC" if is_ip else "STRICT_DNS",
        "connect_timeout": "1s",
        # Every HTTP request in flight holds one ext_proc stream: Envoy's default of 1,024
        # requests would cap the gateway at 1,024 concurrent completions with 503 overflows.
        "circuit_breakers": _thresholds(EXTPROC_BREAKER),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": _load_assignment(EXTPROC_CLUSTER, ((p.extproc_host, p.extproc_port),)),
    }


def _load_assignment(name: str, endpoints: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    return {
        "cluster_name": name,
        "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _socket(h, port)}} for h, port in endpoints]}
        ],
    }


def _socket(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}
