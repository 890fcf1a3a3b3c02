"""A scheduling profile: filters, then weighted scorers (clamped), then a picker; each timed."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter

from extproc.endpoints import Endpoint
from extproc.logs import get_logger
from extproc.metrics import PickerMetrics
from extproc.scheduling.context import SchedulingContext
from extproc.scheduling.normalize import Weighted, clamp_unit, in_unit, weighted_sum
from extproc.scheduling.plugin import Filter, Picker, Plugin, Scorer

log = get_logger(__name__)

Observe = Callable[[float], None]
# Plugin durations are recorded on one cycle in this many: a histogram observation costs about
# as much as a cheap scorer, and the distribution is the same from a sample. The first cycle is
# always timed; the whole cycle (scheduler e2e) is timed every time.
PLUGIN_TIMING_EVERY = 8


def _ignore(_: float) -> None:
    return None


def plugin_timer(metrics: PickerMetrics | None, extension_point: str, plugin: Plugin) -> Observe:
    """The bound `observe` of the plugin's duration histogram child (resolved once)."""
    if metrics is None:
        return _ignore
    child = metrics.plugin_duration.labels(extension_point, plugin.plugin_type, plugin.name)
    return child.observe


@dataclass(frozen=True, slots=True)
class WeightedScorer:
    scorer: Scorer
    weight: float


class SchedulingProfile:
    """Runs one profile over a context and returns the ranked endpoints."""

    def __init__(
        self,
        name: str,
        *,
        filters: Sequence[Filter],
        scorers: Sequence[WeightedScorer],
        picker: Picker,
        metrics: PickerMetrics | None = None,
    ) -> None:
        self.name = name
        self.filters = tuple(filters)
        self.scorers = tuple(scorers)
        self.picker = picker
        self._filters = [(f, plugin_timer(metrics, "Filter", f)) for f in self.filters]
        self._scorers = [
            (s.scorer, s.weight, s.scorer.bounded, plugin_timer(metrics, "Scorer", s.scorer))
            for s in self.scorers
            if s.weight != 0
        ]
        self._picker_timer = plugin_timer(metrics, "Picker", picker)
        self._cycles = 0

    def run(self, ctx: SchedulingContext, count: int) -> list[Endpoint]:
        """Up to `count` endpoints of `ctx`, best first. Filters may raise PickerErrors."""
        timed = self._cycles % PLUGIN_TIMING_EVERY == 0
        self._cycles += 1
        for plugin, observe in self._filters:
            started = perf_counter()
            kept = plugin.filter(ctx)
            if timed:
                observe(perf_counter() - started)
            # A filter that empties the set passes its input on.
            if kept and len(kept) != len(ctx):
                ctx = ctx.select(kept)
        n = len(ctx)
        terms: list[Weighted] = []
        for scorer, weight, bounded, observe in self._scorers:
            if timed:
                started = perf_counter()
                scores = scorer.score(ctx)
                observe(perf_counter() - started)
            else:
                scores = scorer.score(ctx)
            if len(scores) != n:
                log.error("scorer_length_mismatch", scorer=scorer.name, got=len(scores), want=n)
                continue
            terms.append((weight, scores if bounded or in_unit(scores) else clamp_unit(scores)))
        totals = weighted_sum(terms, n)
        if n and math.isnan(sum(totals)):
            # A NaN score slipped past `in_unit` (it only skips NaN): clamp every scorer fully.
            totals = weighted_sum([(w, clamp_unit(s)) for w, s in terms], n)
        started = perf_counter()
        ranked = self.picker.pick(ctx, totals, count)
        if timed:
            self._picker_timer(perf_counter() - started)
        endpoints = ctx.endpoints
        return [endpoints[i] for i in ranked]
