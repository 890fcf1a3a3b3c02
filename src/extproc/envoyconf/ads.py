"""An Envoy bootstrap whose pool clusters and route come from our ADS server (`extproc xds`).

The listener, the ext_proc filter and the picker's cluster stay static (they are the same as in
the static bootstrap); `dynamic_resources` takes every other cluster over ADS from a static
`xds` cluster (HTTP/2) that points at the xDS server, and the listener's route over RDS from the
same stream. The route carries the ext_proc `failure_mode_allow` override that follows the
InferencePool's ``failureMode`` (`extproc.xds.resources.route_configuration`); until it arrives
the listener does not serve. Per cluster mode:

- ``pool``: the route targets the ORIGINAL_DST cluster ``inference-pool`` served by CDS;
- ``per-endpoint``: the route takes the cluster named by ``x-gateway-destination-endpoint``
  (one cluster per ``ip:port``), and the ext_proc filter clears the route cache after the
  picker's header mutation so that the route is chosen again with the new header;
- ``fail-open``: the route targets the EDS cluster ``inference-pool`` (override_host policy);
  with ``failureMode: FailOpen`` requests go on without the picker when it is unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from extproc.envoyconf.bootstrap import (
    POOL_CLUSTER,
    ROUTE_NAME,
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
    # Its route settings do not apply: the route comes from the xDS server
    # (`extproc xds --route-timeout`).
    base: BootstrapParams = field(default_factory=BootstrapParams)
    cluster_mode: ClusterMode = "pool"
    xds_host: str = "127.0.0.1"
    xds_port: int = DEFAULT_XDS_PORT


def build_ads_bootstrap(p: AdsBootstrapParams) -> dict[str, Any]:
    config = build_bootstrap(p.base)
    static = config["static_resources"]
    # Keep the picker's cluster; the pool cluster(s) come from CDS.
    static["clusters"] = [c for c in static["clusters"] if c["name"] != POOL_CLUSTER]
    static["clusters"].append(_xds_cluster(p))
    hcm = static["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (ext_proc,) = (f["typed_config"] for f in hcm["http_filters"] if f["name"] == EXT_PROC_FILTER)
    if p.cluster_mode == "per-endpoint":
        # The route is chosen before the picker answers; choose it again afterwards.
        ext_proc["route_cache_action"] = "CLEAR"
    del hcm["route_config"]
    hcm["rds"] = {"config_source": _ads_source(), "route_config_name": ROUTE_NAME}
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
            "cds_config": _ads_source(),
        },
    }


def render_ads_bootstrap(p: AdsBootstrapParams, header: str = "") -> str:
    return header + yaml.safe_dump(build_ads_bootstrap(p), sort_keys=False, width=100)


def _ads_source() -> dict[str, Any]:
    return {"ads": {}, "resource_api_version": "V3"}


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
