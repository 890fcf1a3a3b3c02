"""Score normalisation helpers shared by scorers and the framework."""

from __future__ import annotations

import math
from collections.abc import Sequence

Weighted = tuple[float, Sequence[float]]


def inverse_min_max(values: Sequence[float]) -> list[float]:
    """``(max - v) / (max - min)``: the smallest value scores 1, the largest 0; all equal → 1.

    For finite inputs every result is in [0, 1] exactly: ``max - v <= max - min`` after
    rounding, and ``d x fl(1/d)`` rounds to at most 1.0 (its error is within half an ulp of 1).
    """
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [1.0] * len(values)
    scale = 1.0 / (hi - lo)
    return [(hi - v) * scale for v in values]


def in_unit(scores: Sequence[float]) -> bool:
    """True when every non-NaN score is in [0, 1] (two C-level passes; NaN is not detected).

    A NaN in the first position makes `min`/`max` return NaN, so this is False; elsewhere
    NaN is skipped by both — callers detect it on the weighted totals instead.
    """
    return not scores or (min(scores) >= 0.0 and max(scores) <= 1.0)


def clamp_unit(scores: Sequence[float]) -> Sequence[float]:
    """Scores clamped to [0, 1]; NaN becomes 0. Cheap when already in range (C-level checks)."""
    if not scores:
        return scores
    total = sum(scores)
    if not math.isnan(total) and min(scores) >= 0.0 and max(scores) <= 1.0:
        return scores
    return [(1.0 if s > 1.0 else s) if s >= 0.0 else 0.0 for s in scores]


def weighted_sum(terms: Sequence[Weighted], n: int) -> list[float]:
    """``Σ weight x scores`` per index, summed left to right (the same rounding as a running
    total), up to three scorers per list pass instead of two C-level maps per scorer."""
    totals: list[float] | None = None
    i, k = 0, len(terms)
    while i < k:
        left = k - i
        if left >= 3:
            (wa, a), (wb, b), (wc, c) = terms[i], terms[i + 1], terms[i + 2]
            i += 3
            if totals is None:
                totals = [wa * x + wb * y + wc * z for x, y, z in zip(a, b, c, strict=True)]
            else:
                totals = [
                    t + wa * x + wb * y + wc * z for t, x, y, z in zip(totals, a, b, c, strict=True)
                ]
        elif left == 2:
            (wa, a), (wb, b) = terms[i], terms[i + 1]
            i += 2
            if totals is None:
                totals = [wa * x + wb * y for x, y in zip(a, b, strict=True)]
            else:
                totals = [t + wa * x + wb * y for t, x, y in zip(totals, a, b, strict=True)]
        else:
            wa, a = terms[i]
            i += 1
            if totals is None:
                totals = [wa * x for x in a]
            else:
                totals = [t + wa * x for t, x in zip(totals, a, strict=True)]
    return [0.0] * n if totals is None else totals
