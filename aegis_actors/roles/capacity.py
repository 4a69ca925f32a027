"""How many HTTP calls a role carries at once, and when it counts as saturated.

A worker holds one call for at most the stage budget (`timeout_s`), so by Little's law a
pool of `events_per_s x timeout_s` workers never makes a call wait for a thread at that
rate, however slow the API is within budget. Past it, waiting in our own pool would eat
the stage budget and fail events that the API never saw; instead the role tells the
gateway it is saturated (a `RoleLoad`), with hysteresis so the signal does not flap.
"""

from __future__ import annotations

import math

from aegis_actors.settings import RoleSettings

HIGH = 0.9  # share of the workers busy (out or queued) at which the role is saturated
LOW = 0.75  # ... and at which it is free again


def pool_workers(cfg: RoleSettings, events_per_s: float) -> int:
    """The configured worker count, or (0 = auto) the rate times the stage budget."""
    if cfg.workers > 0:
        return cfg.workers
    return max(4, min(1024, math.ceil(events_per_s * cfg.timeout_s)))


def pending_limit(cfg: RoleSettings, workers: int) -> int:
    """Calls in progress beyond which a new one fails at once (0 = twice the workers)."""
    return cfg.max_pending if cfg.max_pending > 0 else 2 * workers


class LoadMark:
    """High/low water marks over the calls a pool holds; reports only the crossings."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.high = max(1, math.ceil(HIGH * capacity))
        self.low = min(self.high - 1, math.floor(LOW * capacity))
        self.saturated = False
        self.times = 0  # how often it became saturated

    def update(self, busy: int) -> bool | None:
        """The new state when `busy` crosses a mark, else None."""
        if not self.saturated and busy >= self.high:
            self.saturated = True
            self.times += 1
            return True
        if self.saturated and busy <= self.low:
            self.saturated = False
            return False
        return None
