"""max-score, random and weighted-random pickers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle
from extproc.scheduling.plugin import Picker
from extproc.scheduling.plugins.max_score_picker import rank_top
from extproc.scheduling.registry import REGISTRY

from .builders import make_context, make_endpoint


def _picker(kind: str, seed: int = 0) -> Picker:
    plugin = REGISTRY[kind](kind, Fields({}, "test"), PluginHandle(random.Random(seed)))
    assert isinstance(plugin, Picker)
    return plugin


CTX = make_context([make_endpoint(n) for n in "abcd"])


@pytest.mark.parametrize(
    ("scores", "count", "want"),
    [
        pytest.param([0.1, 0.9, 0.5, 0.3], 1, [1], id="best"),
        pytest.param([0.1, 0.9, 0.5, 0.3], 3, [1, 2, 3], id="fallbacks-in-score-order"),
        pytest.param([0.1, 0.9, 0.5, 0.3], 9, [1, 2, 3, 0], id="count-above-size"),
    ],
)
def test_max_score_ranking(scores: list[float], count: int, want: list[int]) -> None:
    assert _picker("max-score-picker").pick(CTX, scores, count) == want


def test_max_score_breaks_ties_at_random() -> None:
    rng = random.Random(3)
    seen = Counter(rank_top([1.0, 1.0, 0.0, 1.0], 1, rng)[0] for _ in range(300))
    assert set(seen) == {0, 1, 3}
    ranked = rank_top([1.0, 1.0, 0.5, 0.0], 3, rng)
    assert sorted(ranked[:2]) == [0, 1] and ranked[2] == 2


def test_random_picker_distinct_and_uniform() -> None:
    picker = _picker("random-picker")
    seen = Counter()
    for _ in range(400):
        picked = picker.pick(CTX, [9.0, 0.0, 0.0, 0.0], 2)
        assert len(set(picked)) == 2
        seen[picked[0]] += 1
    assert set(seen) == {0, 1, 2, 3}


def test_weighted_random_follows_scores() -> None:
    picker = _picker("weighted-random-picker")
    seen = Counter(picker.pick(CTX, [3.0, 1.0, 0.0, 0.0], 1)[0] for _ in range(2000))
    assert set(seen) == {0, 1}
    assert 2.0 < seen[0] / seen[1] < 4.5
    assert sorted(picker.pick(CTX, [3.0, 1.0, 0.0, 0.0], 4)) == [0, 1, 2, 3]
    assert len(picker.pick(CTX, [0.0] * 4, 1)) == 1
