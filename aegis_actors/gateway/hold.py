"""Events held back at the gateway while an AI role is saturated (SPEC 5.2 overload).

A role whose worker pool is (nearly) full says so with a `RoleLoad`; until it is free
again, a new event for an idle symbol waits here instead of queueing inside the role
past its stage budget (where it would fail). Latest wins per symbol, as in the intake:
a held event replaced by a newer one is shed and counted. When the role frees up, the
oldest held events go first, a few at once and then one per finished event, so the
pipeline refills at the pace it drains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aegis_actors.gateway.intake import PendingTick, Waiting
from aegis_actors.messages import MarketEvent, RoleLoad

RELEASE_MAX = 16  # held events let go at once when a role frees up (no burst of calls)


@dataclass
class Held:
    items: dict[str, Waiting] = field(default_factory=dict)  # symbol -> item, oldest first
    loads: dict[str, RoleLoad] = field(default_factory=dict)  # role -> its last report
    held: int = 0  # items that had to wait here
    shed: int = 0  # held items replaced by a newer one (never dispatched)

    @property
    def saturated(self) -> bool:
        return any(load.saturated for load in self.loads.values())

    def busy(self) -> str:
        """The saturated roles, e.g. 'analyst 225/250', for the log line."""
        return ", ".join(
            f"{r} {x.in_flight}/{x.capacity}" for r, x in self.loads.items() if x.saturated
        )

    def hold(self, symbol: str, item: Waiting) -> bool:
        """Keep `item` for later; True when it replaced a held one (that one is shed)."""
        old = self.items.get(symbol)
        if old is None:
            self.held += 1
            self.items[symbol] = item
            return False
        self.shed += 1
        if not (isinstance(item, PendingTick) and isinstance(old, MarketEvent)):
            self.items[symbol] = item  # keeps its place in line; a headline beats a tick
        return True

    def note(self, load: RoleLoad) -> int:
        """Record a role's report; how many held items may go now (0 while saturated)."""
        self.loads[load.role] = load
        if self.saturated:
            return 0
        return max(1, min(RELEASE_MAX, (load.capacity - load.in_flight) // 2))

    def take(self, n: int) -> list[tuple[str, Waiting]]:
        out: list[tuple[str, Waiting]] = []
        while self.items and len(out) < n:
            symbol = next(iter(self.items))
            out.append((symbol, self.items.pop(symbol)))
        return out
