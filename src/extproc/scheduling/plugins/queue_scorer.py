"""queue-scorer: prefer endpoints with shorter waiting queues."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.normalize import inverse_min_max
from extproc.scheduling.plugin import Scorer


class QueueScorer(Scorer):
    """Score ``(max - q) / (max - min)`` over the candidates' waiting queues ``q``.

    Input: `EndpointMetrics.waiting` (scraped). All equal → 1 for every endpoint. No parameters.
    """

    plugin_type = "queue-scorer"
    bounded = True  # inverse_min_max over ints: see `normalize.inverse_min_max`.

    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        return inverse_min_max([m.waiting for m in ctx.metrics])


def factory(name: str, params: Fields, handle: PluginHandle) -> QueueScorer:
    return QueueScorer(name)
