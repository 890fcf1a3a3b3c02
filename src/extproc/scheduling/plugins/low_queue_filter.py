"""low-queue-filter: keep endpoints whose waiting queue is below a threshold (v0.3 tree)."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Filter

DEFAULT_THRESHOLD = 128


class LowQueueFilter(Filter):
    """Keep ``waiting < threshold``. Parameter `threshold` (128)."""

    plugin_type = "low-queue-filter"

    def __init__(self, name: str, threshold: int) -> None:
        super().__init__(name)
        self.threshold = threshold

    def filter(self, ctx: SchedulingContext) -> Sequence[int]:
        limit = self.threshold
        return [i for i, m in enumerate(ctx.metrics) if m.waiting < limit]


def factory(name: str, params: Fields, handle: PluginHandle) -> LowQueueFilter:
    return LowQueueFilter(name, params.integer("threshold", DEFAULT_THRESHOLD, lo=0))
