"""InferenceModel resolution: requested model name → weighted target model and criticality."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass

from extproc.api.v1alpha2 import Criticality, InferenceModel


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """What one request asked for and where it goes."""

    model_name: str
    target_model: str
    criticality: Criticality


@dataclass(frozen=True, slots=True)
class _Rule:
    criticality: Criticality
    targets: tuple[str, ...]
    cumulative: tuple[int, ...]  # running sum of weights, for a bisect draw


class ModelTable:
    """Immutable lookup table built once per change of the InferenceModel set.

    When two InferenceModels claim the same modelName the oldest wins (creationTimestamp, then
    order of appearance). Targets without weights are drawn uniformly; with weights, in
    proportion to them. A rule without targets sends the model name through unchanged.
    """

    __slots__ = ("_rng", "_rules", "objects")

    def __init__(self, models: Iterable[InferenceModel], rng: random.Random) -> None:
        self._rng = rng
        self.objects: dict[str, InferenceModel] = {}
        for model in sorted(models, key=lambda m: m.age_key):
            self.objects.setdefault(model.model_name, model)
        self._rules = {name: _rule(model) for name, model in self.objects.items()}

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, model_name: str) -> bool:
        return model_name in self._rules

    def resolve(self, model_name: str) -> ResolvedModel | None:
        rule = self._rules.get(model_name)
        if rule is None:
            return None
        if len(rule.targets) == 1:
            target = rule.targets[0]
        else:
            draw = self._rng.randrange(rule.cumulative[-1])
            target = rule.targets[bisect.bisect_right(rule.cumulative, draw)]
        return ResolvedModel(model_name, target, rule.criticality)


def _rule(model: InferenceModel) -> _Rule:
    if not model.target_models:
        return _Rule(model.criticality, (model.model_name,), (1,))
    names = tuple(t.name for t in model.target_models)
    weights = [t.weight if t.weight is not None else 1 for t in model.target_models]
    return _Rule(model.criticality, names, tuple(itertools.accumulate(weights)))
