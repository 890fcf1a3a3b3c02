"""max-score-picker: the highest total score wins; ties are broken at random."""

from __future__ import annotations

import random
from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Picker


def rank_top(scores: Sequence[float], count: int, rng: random.Random) -> list[int]:
    """Indices of the `count` best scores, best first, random order within equal scores."""
    out: list[int] = []
    remaining = list(range(len(scores)))
    while remaining and len(out) < count:
        best = max(scores[i] for i in remaining)
        ties = [i for i in remaining if scores[i] == best]
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
