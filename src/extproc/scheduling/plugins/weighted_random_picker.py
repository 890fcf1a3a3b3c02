"""weighted-random-picker: an endpoint drawn with probability proportional to its score."""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Picker


class WeightedRandomPicker(Picker):
    """Sample without replacement, weight = total score; all-zero weights draw uniformly."""

    plugin_type = "weighted-random-picker"

    def __init__(self, name: str, rng: random.Random) -> None:
        super().__init__(name)
        self._rng = rng

    def pick(self, ctx: SchedulingContext, scores: Sequence[float], count: int) -> list[int]:
        indices = list(range(len(scores)))
        weights = [max(0.0, s) for s in scores]
        out: list[int] = []
        while indices and len(out) < count:
            cumulative = list(accumulate(weights))
            total = cumulative[-1]
            if total <= 0.0:
                k = self._rng.randrange(len(indices))
            else:
                k = min(bisect_right(cumulative, self._rng.random() * total), len(indices) - 1)
            out.append(indices.pop(k))
            weights.pop(k)
        return out


def factory(name: str, params: Fields, handle: PluginHandle) -> WeightedRandomPicker:
    return WeightedRandomPicker(name, handle.rng)
