"""Benchmark helpers."""

from __future__ import annotations

import math

import pytest

from bench.common import percentile


@pytest.mark.parametrize(("n", "q"), [(10, 90), (30, 90), (10, 50), (400, 90), (3990, 90), (7, 99)])
def test_percentile_is_nearest_rank(n: int, q: float) -> None:
    values = [float(i) for i in range(n, 0, -1)]
    assert percentile(values, q) == math.ceil(q * n / 100)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 90))
