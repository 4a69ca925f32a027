"""Anomaly detection for the in-session checks (SPEC 7): a z-score against recent history."""

from __future__ import annotations

import statistics
from collections import deque


class ZScore:
    """A rolling series; `observe` scores a value against the history before adding it."""

    def __init__(self, window: int = 500, min_samples: int = 30) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.min_samples = min_samples
        self.last_z: float | None = None

    def observe(self, x: float) -> float | None:
        z = None
        if len(self.values) >= self.min_samples:
            mean = statistics.fmean(self.values)
            sd = statistics.pstdev(self.values, mean)
            # a floor on the spread: a steady series must not flag a 10% wobble
            sd = max(sd, abs(mean) * 0.1, 1e-9)
            z = (x - mean) / sd
        self.values.append(x)
        self.last_z = z
        return z
