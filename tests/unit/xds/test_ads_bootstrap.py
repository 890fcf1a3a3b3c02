"""The ADS bootstrap: shipped files match the builder; per-mode route and ext_proc settings."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.envoyconf.ads import AdsBootstrapParams, build_ads_bootstrap, render_ads_bootstrap
from extproc.tools.gen_envoy import _HEADER, ADS_FILES, ENVOY_DIR


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]  # type: ignore[no-any-return]


def _ext_proc(config: dict[str, Any]) -> dict[str, Any]:
    (f,) = [f for f in _hcm(config)["http_filters"] if f["name"] == "envoy.filters.http.ext_proc"]
    return f["typed_config"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(ADS_FILES))
def test_shipped_file_matches_builder(name: str) -> None:
    purpose, params = ADS_FILES[name]
    header = _HEADER.replace("bootstrap.py", "ads.py").format(purpose=purpose)
    assert (ENVOY_DIR / name).read_text() == render_ads_bootstrap(params, header)


def test_pool_mode_takes_clusters_from_ads() -> None:
    config = build_ads_bootstrap(AdsBootstrapParams(xds_port=1234))
    names = [c["name"] for c in config["static_resources"]["clusters"]]
    assert names == ["extproc", "xds"]
    assert config["dynamic_resources"]["cds_config"] == {"ads": {}, "resource_api_version": "V3"}
    xds = config["static_resources"]["clusters"][1]
    assert (
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["port_value"]
        == 1234
    )
    route = _hcm(config)["route_config"]["virtual_hosts"][0]["routes"][-1]["route"]
    assert route["cluster"] == "inference-pool"
    assert _ext_proc(config)["failure_mode_allow"] is False


def test_per_endpoint_mode_routes_by_header_and_clears_route_cache() -> None:
    config = build_ads_bootstrap(AdsBootstrapParams(cluster_mode="per-endpoint"))
    for route in _hcm(config)["route_config"]["virtual_hosts"][0]["routes"]:
        assert route["route"]["cluster_header"] == "x-gateway-destination-endpoint"
        assert "cluster" not in route["route"]
    assert _ext_proc(config)["route_cache_action"] == "CLEAR"


def test_fail_open_sets_failure_mode_allow() -> None:
    config = build_ads_bootstrap(
        AdsBootstrapParams(cluster_mode="fail-open", failure_mode_allow=True)
    )
    assert _ext_proc(config)["failure_mode_allow"] is True
