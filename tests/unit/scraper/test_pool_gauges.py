"""Pool gauges: averages over fresh endpoints only, and no series for a pool not known (yet)."""

from __future__ import annotations

import asyncio
import math

from extproc.api.v1alpha2 import InferencePool
from extproc.endpoints import Endpoint
from extproc.metrics import PickerMetrics
from extproc.scraper.manager import ScrapeConfig, ScrapeManager
from extproc.scraper.pool_gauges import update_pool_gauges
from extproc.scraper.snapshot import EndpointMetrics, MetricsStore
from tests.unit.scraper.test_manager import FakeSource

EP = Endpoint("pod-0", "10.0.0.1", 8000)


def _values(metrics: PickerMetrics) -> tuple[float | None, float | None]:
    get = metrics.registry.get_sample_value
    return (
        get("inference_pool_average_queue_size", {"name": "pool"}),
        get("inference_pool_average_kv_cache_utilization", {"name": "pool"}),
    )


def _is_stale_value(value: float | None, stale: float) -> bool:
    return value is not None and not math.isnan(value) and value == stale


def _setup() -> tuple[PickerMetrics, MetricsStore]:
    metrics = PickerMetrics()
    store = MetricsStore(staleness=1.0)
    store.put(EP.address, EndpointMetrics(waiting=7, kv_usage=0.9, updated_at=100.0))
    update_pool_gauges(metrics, "pool", (EP,), store, now=100.5)
    assert _values(metrics) == (7.0, 0.9)
    return metrics, store


def test_averages_do_not_freeze_when_every_endpoint_goes_stale() -> None:
    metrics, store = _setup()
    # The pod stops answering its /metrics page: 10 minutes later nothing is fresh.
    update_pool_gauges(metrics, "pool", (EP,), store, now=700.0)
    queue, kv = _values(metrics)
    assert not _is_stale_value(queue, 7.0), "average queue still reports the stale snapshot"
    assert not _is_stale_value(kv, 0.9), "average KV use still reports the stale snapshot"


def test_averages_do_not_freeze_when_the_pool_is_emptied() -> None:
    metrics, store = _setup()
    store.remove(EP.address)
    update_pool_gauges(metrics, "pool", (), store, now=101.0)
    assert metrics.registry.get_sample_value("inference_pool_ready_pods", {"name": "pool"}) == 0
    queue, kv = _values(metrics)
    assert not _is_stale_value(queue, 7.0), "0 ready pods, yet an average queue of 7"
    assert not _is_stale_value(kv, 0.9), "0 ready pods, yet an average KV use of 0.9"


class UnsyncedSource(FakeSource):
    synced: bool = False

    def pool(self) -> InferencePool | None:
        return InferencePool(name="pool", target_port=8000) if self.synced else None


def _pool_names(metrics: PickerMetrics) -> set[str]:
    return {
        s.labels["name"]
        for family in metrics.registry.collect()
        if family.name.startswith("inference_pool_")
        for s in family.samples
    }


def test_no_unnamed_pool_series_before_the_pool_is_known() -> None:
    async def scenario() -> set[str]:
        metrics = PickerMetrics()
        source = UnsyncedSource()
        manager = ScrapeManager(
            source, MetricsStore(), metrics=metrics,
            config=ScrapeConfig(gauge_interval=3600.0),
        )  # fmt: skip
        await manager.start()
        try:
            for _ in range(5):  # let the gauge task run its first pass (no timing involved)
                await asyncio.sleep(0)
            source.synced = True  # the Kubernetes source has now found the pool
        finally:
            await manager.stop()
        return _pool_names(metrics)

    names = asyncio.run(scenario())
    assert "" not in names, 'inference_pool_*{name=""} exported for a pool not yet known'
