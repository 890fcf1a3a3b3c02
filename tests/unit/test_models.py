"""InferenceModel resolution: weights, uniform targets, oldest wins."""

from __future__ import annotations

import random
from collections import Counter

from extproc.api.v1alpha2 import InferenceModel, TargetModel
from extproc.models import ModelTable


def make_model(
    name: str, model_name: str, targets: dict[str, int | None] | None = None,
    age: tuple[str, int] = ("", 0), criticality: str = "Standard",
) -> InferenceModel:  # fmt: skip
    return InferenceModel(
        name=name,
        model_name=model_name,
        criticality=criticality,  # type: ignore[arg-type]
        target_models=tuple(TargetModel(name=n, weight=w) for n, w in (targets or {}).items()),
        pool_name="pool",
        age_key=age,
    )


def test_weighted_targets_follow_weights() -> None:
    table = ModelTable([make_model("m", "chat", {"a": 90, "b": 10})], random.Random(1))
    counts = Counter(table.resolve("chat").target_model for _ in range(10_000))  # type: ignore[union-attr]
    assert 0.87 < counts["a"] / 10_000 < 0.93


def test_targets_without_weights_are_uniform() -> None:
    table = ModelTable([make_model("m", "chat", {"a": None, "b": None})], random.Random(2))
    counts = Counter(table.resolve("chat").target_model for _ in range(10_000))  # type: ignore[union-attr]
    assert 0.46 < counts["a"] / 10_000 < 0.54


def test_no_targets_keeps_the_name_and_criticality() -> None:
    table = ModelTable([make_model("m", "chat", criticality="Critical")], random.Random(0))
    resolved = table.resolve("chat")
    assert resolved is not None
    assert (resolved.target_model, resolved.criticality) == ("chat", "Critical")
    assert table.resolve("other") is None


def test_oldest_object_wins_a_duplicate_model_name() -> None:
    newer = make_model("newer", "chat", {"new": 1}, age=("2025-02-01T00:00:00Z", 0))
    older = make_model("older", "chat", {"old": 1}, age=("2025-01-01T00:00:00Z", 1))
    table = ModelTable([newer, older], random.Random(0))
    assert table.resolve("chat").target_model == "old"  # type: ignore[union-attr]
