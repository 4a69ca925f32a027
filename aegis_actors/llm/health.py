"""API health tiers (SPEC 4.1): how long a role's API has been failing, on the clock.

A call that exhausted its endpoints starts (or continues) an outage; any success ends
it. The owner schedules `check` at the tier thresholds; each tier is reported once per
outage, so an outage of five minutes yields exactly one `limited` and one `safe`.
"""

from __future__ import annotations


class ApiHealth:
    def __init__(self, limited_after_s: float = 30.0, safe_after_s: float = 300.0) -> None:
        self.limited_after_s = limited_after_s
        self.safe_after_s = safe_after_s
        self.down_since: float | None = None
        self.outage = 0  # outage number, so timers from an ended outage are ignored
        self.reported: set[str] = set()
        self.failures = 0

    def failure(self, now: float) -> bool:
        """Count a failed call; True when it starts a new outage (schedule the checks)."""
        self.failures += 1
        if self.down_since is not None:
            return False
        self.down_since = now
        self.outage += 1
        self.reported = set()
        return True

    def success(self) -> bool:
        """True when this ends an outage."""
        ended = self.down_since is not None
        self.down_since = None
        return ended

    def check(self, outage: int, now: float) -> str | None:
        """The tier newly reached by this outage at `now`: 'safe', 'limited' or None."""
        if outage != self.outage or self.down_since is None:
            return None
        down = now - self.down_since
        for tier, after in (("safe", self.safe_after_s), ("limited", self.limited_after_s)):
            if down >= after - 1e-9 and tier not in self.reported:
                self.reported.add(tier)
                if tier == "safe":
                    self.reported.add("limited")
                return tier
        return None
