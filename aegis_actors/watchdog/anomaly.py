"""Anomaly detection for the in-session checks (SPEC 7): a z-score against recent history.

Running sums keep each observation O(1): the watchdog scores every stage of every event.
"""

from __future__ import annotations

import math
from collections import deque


class ZScore:
    """A rolling series; `observe` scores a value against the history before adding it."""

    def __init__(self, window: int = 500, min_samples: int = 30) -> None:
        self.values: deque[float] = deque()
        self.window = window
        self.min_samples = min_samples
        self.total = 0.0
        self.squares = 0.0
        self.last_z: float | None = None

    def observe(self, x: float) -> float | None:
        z = self.score(x)
        self.add(x)
        self.last_z = z
        return z

    def score(self, x: float) -> float | None:
        """`x` against the history so far (None until `min_samples`); adds nothing."""
        n = len(self.values)
        if n < self.min_samples:
            return None
        mean = self.total / n
        var = self.squares / n - mean * mean
        sd = math.sqrt(var) if var > 0.0 else 0.0
        # a floor on the spread: a steady series must not flag a 10% wobble
        sd = max(sd, abs(mean) * 0.1, 1e-9)
        return (x - mean) / sd

    def add(self, x: float) -> None:
        """Into the history, unscored (a caller that only cares about some values)."""
        values = self.values
        n = len(values)
        values.append(x)
        self.total += x
        self.squares += x * x
        if n >= self.window:  # one over the window now
            old = values.popleft()
            self.total -= old
            self.squares -= old * old
