"""Network-disconnect tiers (SPEC 4.2), measured on the clock from the moment data stops.

Pure bookkeeping: the market actor feeds it the silence so far and acts on the steps it
returns. Back within 3 s: nothing. 3-10 s: stale (analysis goes on, on cached data).
Over 10 s: safe (cancel all orders, liquidate). Over 30 s: shutdown. Steps only climb
during one outage (a coarse check that jumps from 2 s to 12 s still takes every step in
order); data coming back is one step down to 0.
"""

from __future__ import annotations

from dataclasses import dataclass

OK, STALE, SAFE, SHUTDOWN = 0, 1, 2, 3
NAMES = {OK: "ok", STALE: "stale", SAFE: "safe", SHUTDOWN: "shutdown"}


@dataclass(frozen=True)
class Step:
    tier: int
    silent_s: float

    @property
    def name(self) -> str:
        return NAMES[self.tier]


class NetworkTiers:
    def __init__(self, stale_after_s: float, safe_after_s: float, shutdown_after_s: float) -> None:
        self.limits = ((STALE, stale_after_s), (SAFE, safe_after_s), (SHUTDOWN, shutdown_after_s))
        self.tier = OK
        self.steps = 0

    def due(self, silent_s: float) -> int:
        """The tier a silence of `silent_s` seconds calls for."""
        tier = OK
        for t, limit in self.limits:
            if silent_s > limit:
                tier = t
        return tier

    def check(self, silent_s: float) -> list[Step]:
        """Steps to take now that data has been silent for `silent_s` seconds."""
        target = self.due(silent_s)
        out = []
        while self.tier < target:
            self.tier += 1
            out.append(Step(self.tier, silent_s))
        self.steps += len(out)
        return out

    def data_back(self, silent_s: float) -> Step | None:
        """Data arrived after `silent_s` seconds of silence: back to ok, if we had left it."""
        if self.tier == OK:
            return None
        self.tier = OK
        self.steps += 1
        return Step(OK, silent_s)
