"""least-kv-cache-filter: keep the endpoints in the lowest band of KV-cache use (v0.3 tree)."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Filter
from extproc.scheduling.plugins.least_queue_filter import lowest_band


class LeastKVCacheFilter(Filter):
    """Keep ``kv ≤ min + (max - min) / n`` over the n candidates. No parameters."""

    plugin_type = "least-kv-cache-filter"

    def filter(self, ctx: SchedulingContext) -> Sequence[int]:
        return lowest_band([m.kv_usage for m in ctx.metrics])


def factory(name: str, params: Fields, handle: PluginHandle) -> LeastKVCacheFilter:
    return LeastKVCacheFilter(name)
