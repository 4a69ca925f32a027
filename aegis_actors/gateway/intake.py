"""Per-symbol admission into the pipeline: at most one event in flight, latest wins.

Pure bookkeeping, no actor: the market actor owns one and tells it what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aegis_actors.messages import MarketEvent


@dataclass
class Intake:
    inflight: dict[str, str] = field(default_factory=dict)  # symbol -> event_id
    waiting: dict[str, MarketEvent] = field(default_factory=dict)
    coalesced: int = 0

    def offer(self, event: MarketEvent) -> MarketEvent | None:
        """Returns the event to dispatch now, or None when it waits (replacing an older one)."""
        if event.symbol in self.inflight:
            if event.symbol in self.waiting:
                self.coalesced += 1
            self.waiting[event.symbol] = event
            return None
        self.inflight[event.symbol] = event.event_id
        return event

    def done(self, symbol: str, event_id: str) -> MarketEvent | None:
        """The event finished; returns the next one for the symbol, if one waits."""
        if self.inflight.get(symbol) != event_id:
            return None  # a late report for an event already expired
        del self.inflight[symbol]
        nxt = self.waiting.pop(symbol, None)
        if nxt is not None:
            self.inflight[symbol] = nxt.event_id
        return nxt
