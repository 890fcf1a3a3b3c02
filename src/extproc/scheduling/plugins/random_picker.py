"""random-picker: a uniformly random endpoint (and fallbacks), ignoring scores."""

from __future__ import annotations

import random
from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Picker


class RandomPicker(Picker):
    """Uniform sample without replacement of the surviving endpoints."""

    plugin_type = "random-picker"

    def __init__(self, name: str, rng: random.Random) -> None:
        super().__init__(name)
        self._rng = rng

    def pick(self, ctx: SchedulingContext, scores: Sequence[float], count: int) -> list[int]:
        return self._rng.sample(range(len(ctx)), min(count, len(ctx)))


def factory(name: str, params: Fields, handle: PluginHandle) -> RandomPicker:
    return RandomPicker(name, handle.rng)
