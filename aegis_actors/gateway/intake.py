"""Per-symbol admission into the pipeline: at most one event in flight, latest wins.

Pure bookkeeping, no actor: the market actor owns one and tells it what happened. A tick
that has to wait is kept as a `PendingTick` (a few floats) and only becomes a
`MarketEvent` when its turn comes, so a flood costs no message construction. A waiting
calendar, news or system event is not replaced by a tick (the tick's price still reaches
the cache, so the event is loaded with it); anything else is replaced by the newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aegis_actors.messages import MarketEvent


@dataclass(slots=True)
class PendingTick:
    symbol: str
    price: float
    volume: float
    ts: float


Waiting = MarketEvent | PendingTick


@dataclass
class Intake:
    inflight: dict[str, str] = field(default_factory=dict)  # symbol -> event_id
    waiting: dict[str, Waiting] = field(default_factory=dict)
    coalesced: int = 0

    def offer(self, symbol: str, item: Waiting) -> bool:
        """True when the symbol is free (dispatch now, then `admit`); False when it waits."""
        if symbol not in self.inflight:
            return True
        held = self.waiting.get(symbol)
        if held is not None:
            self.coalesced += 1
            if isinstance(item, PendingTick) and isinstance(held, MarketEvent):
                return False  # keep the headline; the tick's price is in the cache
        self.waiting[symbol] = item
        return False

    def admit(self, symbol: str, event_id: str) -> None:
        self.inflight[symbol] = event_id

    def done(self, symbol: str, event_id: str) -> Waiting | None:
        """The event finished: the symbol is free; returns what waits for it, if anything."""
        if self.inflight.get(symbol) != event_id:
            return None  # a late report for an event already expired
        del self.inflight[symbol]
        return self.waiting.pop(symbol, None)
