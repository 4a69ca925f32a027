"""How many HTTP calls a role carries at once, and when it counts as saturated.

A worker holds one call for at most its stage budget, so by Little's law a pool of
`events_per_s x timeout_s` workers never makes a call wait for a thread at that rate,
however slow the API is within budget. Every role's pool uses the longest budget of the
three: the events a later stage receives were admitted by an earlier one, so the
commander must carry what the analyst let in, not only its own share. Past the rate,
waiting in our own pool would eat the stage budget and fail events that the API never
saw; instead the role tells the gateway it is saturated (a `RoleLoad`), with hysteresis
so the signal does not flap.
"""

from __future__ import annotations

import math

from aegis_actors.settings import RoleSettings, RolesSettings

HIGH = 0.9  # share of the capacity busy (out or queued) at which the role is saturated
LOW = 0.75  # ... and at which it is free again
HEADROOM = 1.5  # calls admitted over what the design rate needs at the measured latency
ALPHA = 0.05  # weight of each answer in the moving average of the latency


def pool_workers(cfg: RoleSettings, roles: RolesSettings) -> int:
    """The configured worker count, or (0 = auto) the rate times the longest budget."""
    if cfg.workers > 0:
        return cfg.workers
    longest = max(r.timeout_s for r in (roles.analyst, roles.verifier, roles.commander))
    return max(4, min(1024, math.ceil(roles.events_per_s * longest)))


def pending_limit(cfg: RoleSettings, workers: int) -> int:
    """Calls in progress beyond which a new one fails at once (0 = twice the workers)."""
    return cfg.max_pending if cfg.max_pending > 0 else 2 * workers


class LoadMark:
    """High/low water marks over the calls a pool holds; reports only the crossings.

    The limit adapts: the calls the role needs at its design rate are `events_per_s x
    latency` (Little's law), with the latency a moving average of what its API answers
    in; the role admits up to HEADROOM times that, never more than its workers. So at
    twice the design rate the role sheds (through the gateway) instead of taking on work
    the process cannot carry, and a slower API gets more calls in flight, not fewer.
    """

    def __init__(self, workers: int, events_per_s: float, latency_s: float) -> None:
        self.workers = workers
        self.events_per_s = events_per_s
        self.latency_s = latency_s  # moving average of answered calls (from sending)
        self.saturated = False
        self.times = 0  # how often it became saturated

    @property
    def capacity(self) -> int:
        need = math.ceil(HEADROOM * self.events_per_s * self.latency_s)
        return max(1, min(self.workers, need))

    def answered(self, seconds: float) -> None:
        self.latency_s += ALPHA * (max(0.0, seconds) - self.latency_s)

    def update(self, busy: int) -> bool | None:
        """The new state when `busy` crosses a mark, else None."""
        cap = self.capacity
        high = max(1, math.ceil(HIGH * cap))
        low = min(high - 1, math.floor(LOW * cap))
        if not self.saturated and busy >= high:
            self.saturated = True
            self.times += 1
            return True
        if self.saturated and busy <= low:
            self.saturated = False
            return False
        return None
