"""Score normalisation helpers shared by scorers."""

from __future__ import annotations

import math
from collections.abc import Sequence


def inverse_min_max(values: Sequence[float]) -> list[float]:
    """``(max - v) / (max - min)``: the smallest value scores 1, the largest 0; all equal → 1."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [1.0] * len(values)
    scale = 1.0 / (hi - lo)
    return [(hi - v) * scale for v in values]


def clamp_unit(scores: Sequence[float]) -> Sequence[float]:
    """Scores clamped to [0, 1]; NaN becomes 0. Cheap when already in range (C-level checks)."""
    if not scores:
        return scores
    total = sum(scores)
    if not math.isnan(total) and min(scores) >= 0.0 and max(scores) <= 1.0:
        return scores
    return [(1.0 if s > 1.0 else s) if s >= 0.0 else 0.0 for s in scores]
