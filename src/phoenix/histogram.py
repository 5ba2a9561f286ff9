"""A histogram kept as plain counts per bucket, read by /metrics when scraped.

prometheus-client's Histogram takes a lock on every observation; a node
serves from one thread, so its histograms are plain lists, turned into
metric families only when scraped (phoenix.metrics).
"""

from __future__ import annotations

import bisect
import itertools

import attrs
from prometheus_client.utils import floatToGoString


@attrs.define
class Histogram:
    """Durations in seconds, counted per bucket of `bounds` (the last for anything larger)."""

    bounds: tuple[float, ...]
    counts: list[int] = attrs.field()
    sum_seconds: float = 0.0

    @counts.default
    def _no_counts(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)  # clocks may disagree by a little
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum_seconds += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by upper bound ("le"), as Prometheus exposes them."""
        bounds = [*map(floatToGoString, self.bounds), "+Inf"]
        return list(zip(bounds, itertools.accumulate(self.counts), strict=True))
