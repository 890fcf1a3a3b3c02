"""inflight-scorer: prefer endpoints with fewer requests in flight through this picker."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.normalize import inverse_min_max
from extproc.scheduling.plugin import Scorer


class InFlightScorer(Scorer):
    """Score ``(max - n) / (max - min)`` over the candidates' in-flight counts ``n``.

    Input: `SchedulingContext.inflight`, the picker's own count of routed, unfinished requests
    per endpoint. It is exact and instantaneous, unlike a scraped queue that lags by up to one
    scrape interval, so it spreads bursts that arrive between scrapes. Min-max (not
    ``1/(1+n)``) so that the spread is the same at 2 or 200 requests. All equal → 1.
    No parameters.
    """

    plugin_type = "inflight-scorer"
    bounded = True  # inverse_min_max over ints: see `normalize.inverse_min_max`.

    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        return inverse_min_max(ctx.inflight)


def factory(name: str, params: Fields, handle: PluginHandle) -> InFlightScorer:
    return InFlightScorer(name)
