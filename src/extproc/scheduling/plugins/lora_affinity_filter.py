"""lora-affinity-filter: prefer endpoints with the adapter loaded, else with a free slot."""

from __future__ import annotations

import random
from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Filter

DEFAULT_PROBABILITY = 0.999


class LoRAAffinityFilter(Filter):
    """v0.3 soft affinity: with probability `probability` (0.999) keep the endpoints where the
    target model is a running adapter (if any); otherwise keep those with a free adapter slot
    (``len(running_loras) < max_lora``), falling back to the affine ones."""

    plugin_type = "lora-affinity-filter"

    def __init__(self, name: str, probability: float, rng: random.Random) -> None:
        super().__init__(name)
        self.probability = probability
        self._rng = rng

    def filter(self, ctx: SchedulingContext) -> Sequence[int]:
        target = ctx.request.target_model
        affine: list[int] = []
        available: list[int] = []
        for i, m in enumerate(ctx.metrics):
            if target in m.running_loras:
                affine.append(i)
            elif len(m.running_loras) < m.max_lora:
                available.append(i)
        if affine and self._rng.random() < self.probability:
            return affine
        return available or affine


def factory(name: str, params: Fields, handle: PluginHandle) -> LoRAAffinityFilter:
    probability = params.number("probability", DEFAULT_PROBABILITY, lo=0.0, hi=1.0)
    return LoRAAffinityFilter(name, probability, handle.rng)
