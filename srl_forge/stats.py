"""Intervals: the one percentile bootstrap of a mean that evaluation, live performance and the benchmarks
report, as an `Interval`, so their intervals are computed, stored and read alike."""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict


class Interval(BaseModel):
    """A measured value with its 95% interval (stored as `{"value", "low", "high"}`)."""

    model_config = ConfigDict(frozen=True)
    value: float
    low: float
    high: float

    @classmethod
    def exact(cls, value: float) -> Interval:
        """A figure with no sampling error (a count, a value measured on the whole set)."""
        return cls(value=value, low=value, high=value)

    def cell(self, digits: int = 2) -> str:
        """`0.85 [0.75, 0.93]`, or the value alone when the interval is a point."""
        if self.low == self.high == self.value:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def percentile_bounds(sorted_draws: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2
    last = len(sorted_draws) - 1
    return sorted_draws[int(tail * last)], sorted_draws[int((1 - tail) * last)]


def mean_interval(values: Sequence[float], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """The mean of `values` with a seeded percentile-bootstrap interval; all zeros when there are none."""
    if not values:
        return Interval.exact(0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    low, high = percentile_bounds(means, level)
    return Interval(value=sum(values) / n, low=low, high=high)
