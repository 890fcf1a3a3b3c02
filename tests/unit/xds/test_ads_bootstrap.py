"""The ADS bootstrap: shipped files match the builder; the route over RDS, per-mode ext_proc."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.envoyconf.ads import (
    AdsBootstrapParams,
    ClusterMode,
    build_ads_bootstrap,
    render_ads_bootstrap,
)
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
    assert "cluster_header" not in _hcm(config)
    assert "route_cache_action" not in _ext_proc(config)


@pytest.mark.parametrize("mode", ["pool", "per-endpoint", "fail-open"])
def test_the_route_comes_over_rds_and_the_filter_fails_closed_by_default(mode: ClusterMode) -> None:
    # The route's ext_proc override carries the pool's failureMode (extproc.xds.resources).
    config = build_ads_bootstrap(AdsBootstrapParams(cluster_mode=mode))
    hcm = _hcm(config)
    assert "route_config" not in hcm
    assert hcm["rds"] == {
        "config_source": {"ads": {}, "resource_api_version": "V3"},
        "route_config_name": "inference",
    }
    assert _ext_proc(config)["failure_mode_allow"] is False


def test_per_endpoint_mode_clears_the_route_cache_after_the_pickers_answer() -> None:
    config = build_ads_bootstrap(AdsBootstrapParams(cluster_mode="per-endpoint"))
    assert _ext_proc(config)["route_cache_action"] == "CLEAR"
