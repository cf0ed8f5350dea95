"""Intervals: the one percentile bootstrap of a mean that evaluation, live performance and the benchmarks
report (`{"value", "low", "high"}`), so their intervals are computed, and read, alike."""

from __future__ import annotations

import random
from collections.abc import Sequence


def percentile_bounds(sorted_draws: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2
    last = len(sorted_draws) - 1
    return sorted_draws[int(tail * last)], sorted_draws[int((1 - tail) * last)]


def mean_interval(values: Sequence[float], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The mean of `values` with a seeded percentile-bootstrap interval; all zeros when there are none."""
    if not values:
        return {"value": 0.0, "low": 0.0, "high": 0.0}
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    low, high = percentile_bounds(means, level)
    return {"value": sum(values) / n, "low": low, "high": high}
