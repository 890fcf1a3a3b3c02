"""has-capacity-filter: keep endpoints under the queue and KV thresholds (v0.3 tree)."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Filter
from extproc.scheduling.saturation import DEFAULT_KV_THRESHOLD, DEFAULT_QUEUE_THRESHOLD


class HasCapacityFilter(Filter):
    """Keep ``waiting ≤ queueThreshold`` and ``kv ≤ kvCacheThreshold`` (5 and 0.8)."""

    plugin_type = "has-capacity-filter"

    def __init__(self, name: str, queue_threshold: int, kv_threshold: float) -> None:
        super().__init__(name)
        self.queue_threshold = queue_threshold
        self.kv_threshold = kv_threshold

    def filter(self, ctx: SchedulingContext) -> Sequence[int]:
        q, kv = self.queue_threshold, self.kv_threshold
        return [i for i, m in enumerate(ctx.metrics) if m.waiting <= q and m.kv_usage <= kv]


def factory(name: str, params: Fields, handle: PluginHandle) -> HasCapacityFilter:
    return HasCapacityFilter(
        name,
        params.integer("queueThreshold", DEFAULT_QUEUE_THRESHOLD, lo=0),
        params.number("kvCacheThreshold", DEFAULT_KV_THRESHOLD, lo=0.0, hi=1.0),
    )
