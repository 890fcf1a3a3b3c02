"""An Envoy bootstrap whose pool clusters come from our ADS server (`extproc xds`).

The listener, the ext_proc filter and the picker's cluster stay static (they are the same as in
the static bootstrap); `dynamic_resources` takes every other cluster over ADS from a static
`xds` cluster (HTTP/2) that points at the xDS server. Per cluster mode:

- ``pool``: the route targets the ORIGINAL_DST cluster ``inference-pool`` served by CDS;
- ``per-endpoint``: the route takes the cluster named by ``x-gateway-destination-endpoint``
  (one cluster per ``ip:port``), and the ext_proc filter clears the route cache after the
  picker's header mutation so that the route is chosen again with the new header;
- ``fail-open``: the route targets the EDS cluster ``inference-pool`` (override_host policy);
  `failure_mode_allow` (from the InferencePool's ``failureMode``) decides whether requests go
  on without the picker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from extproc.envoyconf.bootstrap import (
    DESTINATION_HEADER,
    POOL_CLUSTER,
    BootstrapParams,
    build_bootstrap,
)

ClusterMode = Literal["pool", "per-endpoint", "fail-open"]
CLUSTER_MODES: tuple[ClusterMode, ...] = ("pool", "per-endpoint", "fail-open")
XDS_CLUSTER = "xds"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
DEFAULT_XDS_PORT = 18000
NODE_ID = "inference-gateway"
NODE_CLUSTER = "inference-gateway"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdsBootstrapParams:
    base: BootstrapParams = field(default_factory=BootstrapParams)
    cluster_mode: ClusterMode = "pool"
    xds_host: str = "127.0.0.1"
    xds_port: int = DEFAULT_XDS_PORT
    # True for an InferencePool with `extensionRef.failureMode: FailOpen` (fail-open mode).
    failure_mode_allow: bool = False


def build_ads_bootstrap(p: AdsBootstrapParams) -> dict[str, Any]:
    config = build_bootstrap(p.base)
    static = config["static_resources"]
    # Keep the picker's cluster; the pool cluster(s) come from CDS.
    static["clusters"] = [c for c in static["clusters"] if c["name"] != POOL_CLUSTER]
    static["clusters"].append(_xds_cluster(p))
    hcm = static["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (ext_proc,) = (f["typed_config"] for f in hcm["http_filters"] if f["name"] == EXT_PROC_FILTER)
    ext_proc["failure_mode_allow"] = p.failure_mode_allow
    # The route names clusters that arrive later over CDS.
    hcm["route_config"]["validate_clusters"] = False
    if p.cluster_mode == "per-endpoint":
        # The route is chosen before the picker answers; choose it again afterwards.
        ext_proc["route_cache_action"] = "CLEAR"
        for vhost in hcm["route_config"]["virtual_hosts"]:
            for route in vhost["routes"]:
                action = route["route"]
                if action.pop("cluster", None) == POOL_CLUSTER or "cluster_header" in action:
                    action["cluster_header"] = DESTINATION_HEADER
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": NODE_ID, "cluster": NODE_CLUSTER},
        **config,
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": ads_source,
        },
    }


def render_ads_bootstrap(p: AdsBootstrapParams, header: str = "") -> str:
    return header + yaml.safe_dump(build_ads_bootstrap(p), sort_keys=False, width=100)


def _xds_cluster(p: AdsBootstrapParams) -> dict[str, Any]:
    is_ip = p.xds_host.replace(".", "").isdigit() or ":" in p.xds_host
    return {
        "name": XDS_CLUSTER,
        "type": "STATIC" if is_ip else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": p.xds_host,
                                        "port_value": p.xds_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
