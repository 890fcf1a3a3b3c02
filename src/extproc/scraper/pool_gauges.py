"""Pool-level gauges computed from the endpoints' fresh snapshots."""

from __future__ import annotations

import contextlib

from extproc.endpoints import Endpoint
from extproc.metrics import PickerMetrics
from extproc.scraper.snapshot import MetricsStore


def update_pool_gauges(
    metrics: PickerMetrics,
    pool_name: str,
    endpoints: tuple[Endpoint, ...],
    store: MetricsStore,
    now: float,
) -> None:
    """Average KV use and queue (a float) over fresh endpoints; ready pods = all endpoints."""
    fresh = [s for e in endpoints if (s := store.fresh(e.address, now)) is not None]
    metrics.pool_ready_pods.labels(name=pool_name).set(len(endpoints))
    if fresh:
        metrics.pool_average_kv_cache.labels(name=pool_name).set(
            sum(s.kv_usage for s in fresh) / len(fresh)
        )
        metrics.pool_average_queue.labels(name=pool_name).set(
            sum(s.waiting for s in fresh) / len(fresh)
        )
    else:  # no average over data that is no longer valid: no value at all
        remove_series(metrics, pool_name, averages_only=True)


def remove_series(metrics: PickerMetrics, pool_name: str, *, averages_only: bool = False) -> None:
    """Drop a pool's gauges (all of them when the pool is gone, or only its averages)."""
    gauges = [metrics.pool_average_kv_cache, metrics.pool_average_queue]
    if not averages_only:
        gauges.append(metrics.pool_ready_pods)
    for gauge in gauges:
        with contextlib.suppress(KeyError):
            gauge.remove(pool_name)
