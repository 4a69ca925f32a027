"""Restart intensity as a pure sliding window, kept apart so it can be property-tested."""

from __future__ import annotations

from collections import deque

__all__ = ["Intensity"]


class Intensity:
    """Erlang's MaxR/MaxT: allow at most `max_restarts` restarts in any `within_s` window.

    Times must be non-decreasing. A restart at `t` counts every earlier restart `r` with
    `t - r <= within_s` (both ends inclusive, as in OTP).
    """

    def __init__(self, max_restarts: int, within_s: float) -> None:
        if max_restarts < 0 or within_s < 0:
            raise ValueError("max_restarts and within_s must be >= 0")
        self.max_restarts = max_restarts
        self.within_s = within_s
        self._times: deque[float] = deque()

    def record(self, t: float) -> bool:
        """Count a restart at `t`; False means the limit is exceeded (give up)."""
        self._times.append(t)
        while self._times and t - self._times[0] > self.within_s:
            self._times.popleft()
        return len(self._times) <= self.max_restarts

    def count(self) -> int:
        """Restarts currently inside the window (as of the last `record`)."""
        return len(self._times)
