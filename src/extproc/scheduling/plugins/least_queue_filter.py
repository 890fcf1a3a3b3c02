"""least-queue-filter: keep the endpoints in the lowest band of waiting queues (v0.3 tree)."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Filter


def lowest_band(values: Sequence[float]) -> list[int]:
    """Indices with ``v ≤ min + (max - min) / n`` — the v0.3 "least" rule."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    limit = lo + (hi - lo) / len(values)
    return [i for i, v in enumerate(values) if v <= limit]


class LeastQueueFilter(Filter):
    """Keep ``waiting ≤ min + (max - min) / n`` over the n candidates. No parameters."""

    plugin_type = "least-queue-filter"

    def filter(self, ctx: SchedulingContext) -> Sequence[int]:
        return lowest_band([m.waiting for m in ctx.metrics])


def factory(name: str, params: Fields, handle: PluginHandle) -> LeastQueueFilter:
    return LeastQueueFilter(name)
