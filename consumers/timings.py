"""Durations the projector measures, kept as cumulative histograms (Prometheus' shape) so the
HTTP layer can export them at scrape time without the projector knowing about Prometheus."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the apply-latency buckets: a record's age when it became visible.
APPLY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
#: Upper bounds (seconds) of the snapshot-duration buckets.
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


@dataclass
class Durations:
    """Observations per bucket (not cumulative; ``+Inf`` last), their sum and count.

    Written by one thread (the projector's, or its snapshot thread), read by any: :meth:`copy`
    takes a consistent view under the lock."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float, times: int = 1) -> None:
        """Record ``times`` observations of ``seconds`` (negative clock skew counts as 0)."""
        seconds = max(0.0, seconds)
        with self._lock:
            self.counts[bisect.bisect_left(self.bounds, seconds)] += times
            self.total += seconds * times
            self.count += times

    def observe_many(self, values: list[float]) -> None:
        """Record each of ``values`` (under one lock: a batch of records at once)."""
        with self._lock:
            for seconds in values:
                seconds = max(0.0, seconds)
                self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
                self.total += seconds
            self.count += len(values)

    def copy(self) -> Durations:
        with self._lock:
            return Durations(self.bounds, list(self.counts), self.total, self.count)

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, observations at or below it), ..., ("+Inf", count)]`` for a histogram family."""
        view = self.copy()
        out, running = [], 0
        for bound, n in zip((*map(str, view.bounds), "+Inf"), view.counts, strict=True):
            running += n
            out.append((bound, running))
        return out
