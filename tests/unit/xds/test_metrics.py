"""The xDS server's metrics: streams, responses, ACKs and NACKs per type, what is served now."""

from __future__ import annotations

import asyncio
from pathlib import Path

from grpc_health.v1 import health_pb2
from prometheus_client import generate_latest

from extproc.xds.app import XdsConfig
from extproc.xds.metrics import StreamCounts, XdsMetrics
from extproc.xds.resources import CLUSTER_TYPE, ROUTE_TYPE
from extproc.xds.stream import AdsStream
from tests.integration.httpclient import request

from .builders import (
    config_text,
    discovery_request,
    endpoints_doc,
    health,
    running,
    served_cache,
)


def _samples(metrics: XdsMetrics) -> dict[str, float]:
    out = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_responses_acks_and_nacks_are_counted_per_type() -> None:
    cache, counts = served_cache(), StreamCounts()
    metrics = XdsMetrics(cache, counts, lambda: 2)
    stream = AdsStream(cache, counts=counts)
    (cds,) = stream.on_request(discovery_request(CLUSTER_TYPE))
    (rds,) = stream.on_request(discovery_request(ROUTE_TYPE, names=("inference",)))
    stream.on_request(discovery_request(CLUSTER_TYPE, version=cds.version_info, nonce=cds.nonce))
    stream.on_request(
        discovery_request(ROUTE_TYPE, nonce=rds.nonce, names=("inference",), error="bad route")
    )

    got = _samples(metrics)
    assert got["extproc_xds_streams"] == 2
    assert got['extproc_xds_responses_total{type="Cluster"}'] == 1
    assert got['extproc_xds_responses_total{type="RouteConfiguration"}'] == 1
    assert got['extproc_xds_acks_total{type="Cluster"}'] == 1
    assert 'extproc_xds_acks_total{type="RouteConfiguration"}' not in got
    assert got['extproc_xds_nacks_total{type="RouteConfiguration"}'] == 1
    assert got['extproc_xds_resources{type="Cluster"}'] == 1
    version = cache.versions()[CLUSTER_TYPE]
    assert got[f'extproc_xds_version_info{{type="Cluster",version="{version}"}}'] == 1


async def test_app_serves_health_on_the_ads_port_and_metrics(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(endpoints_doc("10.0.0.1:8000")))
    async with running(XdsConfig(config_file=config, port=0, metrics_port=0)) as app:
        # File mode publishes at load: ready at once.
        assert await health(app) == health_pb2.HealthCheckResponse.SERVING
        url = f"http://127.0.0.1:{app.metrics_port}"
        text = (await asyncio.to_thread(request, url, "/metrics", method="GET")).body.decode()
        assert "extproc_xds_streams 0.0" in text
        assert 'extproc_xds_resources{type="RouteConfiguration"} 1.0' in text
