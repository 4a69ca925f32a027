"""Per-symbol admission into the pipeline: at most one event in flight per symbol (latest
wins), and at most `window` events in flight in all (backpressure).

Pure bookkeeping, no actor: the market actor owns one and tells it what happened. A tick
that has to wait is kept as a `PendingTick` (a few floats) and only becomes a
`MarketEvent` when its turn comes, so a flood costs no message construction. A waiting
calendar, news or system event is not replaced by a tick (the tick's price still reaches
the cache, so the event is loaded with it); anything else is replaced by the newer one.

When the window is full a free symbol's event waits too, in arrival order (`ready`):
an overloaded pipeline slows intake instead of growing queues inside the tree, and what
waits is bounded by the number of symbols. A tick that waited for the window (not for its
own symbol's previous event) past `max_wait_s` is shed when its turn comes (it would fail
its detect-to-analysis SLA): counted, not failed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from aegis_actors.messages import MarketEvent

COALESCED = "coalesced"  # replaced by a newer event for the same symbol (latest wins)
STALE = "stale"  # a tick waited for the window past max_wait_s
LATE = "late"  # a tick reached the context loader past its detect-to-analysis critical time


@dataclass(slots=True)
class PendingTick:
    symbol: str
    price: float
    volume: float
    ts: float


Waiting = MarketEvent | PendingTick


@dataclass
class Intake:
    window: int = 1_000_000  # events in flight at most, all symbols together
    max_wait_s: float = float("inf")  # a tick waiting longer for the window is shed
    inflight: dict[str, str] = field(default_factory=dict)  # symbol -> event_id
    waiting: dict[str, Waiting] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)  # symbol -> waiting for the window since
    ready: deque[str] = field(default_factory=deque)  # free symbols waiting for the window
    coalesced: int = 0
    shed: dict[str, int] = field(default_factory=dict)  # reason -> events shed

    def offer(self, symbol: str, item: Waiting, now: float = 0.0) -> bool:
        """True when the symbol is free and the window open (dispatch now, then `admit`);
        False when it waits."""
        if symbol not in self.inflight and not self.ready and len(self.inflight) < self.window:
            return True
        held = self.waiting.get(symbol)
        if held is not None:
            self.coalesced += 1
            self.shed[COALESCED] = self.shed.get(COALESCED, 0) + 1
            if isinstance(item, PendingTick) and isinstance(held, MarketEvent):
                return False  # keep the headline; the tick's price is in the cache
        elif symbol not in self.inflight:
            self.ready.append(symbol)  # free, but the window is full (or others wait first)
            self.since[symbol] = now
        self.waiting[symbol] = item
        return False

    def admit(self, symbol: str, event_id: str) -> None:
        self.inflight[symbol] = event_id

    def done(self, symbol: str, event_id: str, now: float = 0.0) -> bool:
        """The event finished: its symbol and a window slot are free. False for a late
        report of an event already expired (nothing changes)."""
        if self.inflight.get(symbol) != event_id:
            return False
        del self.inflight[symbol]
        if symbol in self.waiting:
            self.ready.append(symbol)  # its own turn came: now it waits for the window
            self.since[symbol] = now
        return True

    def next(self, now: float) -> Waiting | None:
        """The next waiting item to dispatch while the window has room, oldest first; a
        tick that waited past `max_wait_s` is shed (counted) on the way."""
        while self.ready and len(self.inflight) < self.window:
            symbol = self.ready.popleft()
            item = self.waiting.pop(symbol, None)
            since = self.since.pop(symbol, now)
            if item is None or symbol in self.inflight:
                continue
            if isinstance(item, PendingTick) or item.kind == "tick":
                if now - since > self.max_wait_s:
                    self.shed[STALE] = self.shed.get(STALE, 0) + 1
                    continue
            return item
        return None
