"""kv-cache-utilization-scorer: prefer endpoints with free KV-cache."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Scorer


class KVCacheUtilizationScorer(Scorer):
    """Score ``1 - kv`` where ``kv`` is `EndpointMetrics.kv_usage` (0-1). No parameters."""

    plugin_type = "kv-cache-utilization-scorer"

    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        return [1.0 - m.kv_usage for m in ctx.metrics]


def factory(name: str, params: Fields, handle: PluginHandle) -> KVCacheUtilizationScorer:
    return KVCacheUtilizationScorer(name)
