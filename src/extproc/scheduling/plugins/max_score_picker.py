"""max-score-picker: the highest total score wins; ties are broken at random."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Picker


def rank_top(scores: Sequence[float], count: int, rng: random.Random) -> list[int]:
    """Indices of the `count` best scores, best first, random order within equal scores.

    Within a group of equal scores the order is ``rng.sample`` of the group's indices in
    ascending order; a unique best consumes no randomness.
    """
    if not scores or count <= 0:
        return []
    if math.isnan(sum(scores)):
        return _rank_top_slow(scores, count, rng)
    best = max(scores)
    if count == 1 and scores.count(best) == 1:  # the common case: C-level scans only
        return [scores.index(best)]
    out: list[int] = []
    # A stable sort keeps ascending indices within a group of equal scores.
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
    start = 0
    while start < len(order) and len(out) < count:
        value = scores[order[start]]
        end = start + 1
        while end < len(order) and scores[order[end]] == value:
            end += 1
        ties = order[start:end]
        take = min(count - len(out), len(ties))
        out.extend(rng.sample(ties, take) if len(ties) > 1 else ties)
        start = end
    return out


def _rank_top_slow(scores: Sequence[float], count: int, rng: random.Random) -> list[int]:
    """The reference loop; only for scores holding NaN (or infinities of both signs)."""
    out: list[int] = []
    remaining = list(range(len(scores)))
    while remaining and len(out) < count:
        best = max(scores[i] for i in remaining)
        ties = [i for i in remaining if scores[i] == best]
        if not ties:  # NaN maximum: nothing compares equal to it
            return out
        take = min(count - len(out), len(ties))
        out.extend(rng.sample(ties, take) if len(ties) > 1 else ties)
        if take < len(ties):
            break
        tied = set(ties)
        remaining = [i for i in remaining if i not in tied]
    return out


class MaxScorePicker(Picker):
    """Primary = highest score (random among ties); fallbacks in descending score order."""

    plugin_type = "max-score-picker"

    def __init__(self, name: str, rng: random.Random) -> None:
        super().__init__(name)
        self._rng = rng

    def pick(self, ctx: SchedulingContext, scores: Sequence[float], count: int) -> list[int]:
        return rank_top(scores, count, self._rng)


def factory(name: str, params: Fields, handle: PluginHandle) -> MaxScorePicker:
    return MaxScorePicker(name, handle.rng)
