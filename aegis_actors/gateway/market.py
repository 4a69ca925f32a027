"""The market actor: the feed, tick validation, and the gateway's intake for every event.

Every valid tick goes to execution (prices for fills and exits) and the cache; events go
to the context loader one per symbol at a time (latest wins), and each event's end comes
back here as `EventDone`, which frees the symbol.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.gateway.intake import Intake
from aegis_actors.gateway.synthetic import SyntheticMarket
from aegis_actors.gateway.ticks import check_tick
from aegis_actors.messages import (
    T0,
    EventDone,
    EventKind,
    MarketEvent,
    Outcome,
    Tick,
    VolatilityIndex,
)
from aegis_actors.runtime import CONTEXT, EXECUTION, POSTURE, WATCHDOG
from supervisors import Timer


@dataclass(frozen=True)
class _Pump:
    """Timer: produce the next synthetic tick round."""


@dataclass(frozen=True)
class _Expire:
    symbol: str
    event_id: str


class MarketFeed(AegisActor):
    def on_start(self) -> None:
        feed = self.settings.feed
        self.symbols = frozenset(feed.symbols)
        self.last_ts: dict[str, float] = {}
        self.intake = Intake()
        self.expiry: dict[str, Timer] = {}
        self.ticks = 0
        self.bad: dict[str, int] = {}
        self.vix: float | None = None
        self.source: SyntheticMarket | None = None
        if feed.kind == "synthetic":
            self.source = SyntheticMarket(
                list(feed.symbols),
                seed=feed.seed,
                volatility=feed.volatility,
                start_price=feed.start_price,
                vix_start=feed.vix_start,
            )
            self.after(feed.tick_interval_s, _Pump())
            self.log.info(
                "synthetic feed: {} symbols every {}s", len(self.symbols), feed.tick_interval_s
            )
        else:
            self.log.warning("feed kind {} is not available in this build", feed.kind)

    # -- ticks -----------------------------------------------------------------------

    def on__Pump(self, _msg: _Pump) -> None:
        assert self.source is not None
        prints, vix = self.source.step()
        now = self.clock.now()
        for p in prints:
            self.ingest(p.symbol, p.price, p.volume, now)
        self.on_volatility(vix, now)
        self.after(self.settings.feed.tick_interval_s, _Pump())

    def on_volatility(self, value: float, ts: float) -> None:
        self.vix = value
        self.send(POSTURE, VolatilityIndex(value=value, ts=ts))

    def ingest(self, symbol: Any, price: Any, volume: Any, ts: Any) -> bool:
        """Validate one print and feed it on; False (with a counted reason) if dropped."""
        reason = check_tick(
            symbol,
            price,
            volume,
            ts,
            known=self.symbols,
            last_ts=self.last_ts.get(symbol) if isinstance(symbol, str) else None,
            now=self.clock.now(),
        )
        if reason is not None:
            self.bad[reason] = self.bad.get(reason, 0) + 1
            self.metrics.bad_ticks.labels(reason).inc()
            self.log.warning(
                "dropped tick ({}): {!r} {!r} {!r} {!r}", reason, symbol, price, volume, ts
            )
            return False
        price, volume, ts = float(price), float(volume), float(ts)
        self.last_ts[symbol] = ts
        self.ticks += 1
        self.metrics.ticks.inc()
        self.rt.cache.push_price(symbol, price, ts)
        self.send(EXECUTION, Tick(symbol=symbol, price=price, volume=volume, ts=ts))
        self.offer(
            MarketEvent(
                event_id=new_event_id(),
                kind=EventKind.TICK,
                symbol=symbol,
                price=price,
                volume=volume,
                ts=ts,
                stamps={T0: self.clock.now()},
            )
        )
        return True

    # -- the intake ------------------------------------------------------------------

    def on_MarketEvent(self, event: MarketEvent) -> None:
        """Calendar, news and system events enter here too."""
        if T0 not in event.stamps:
            event = event.stamp(T0, self.clock.now())
        self.offer(event)

    def offer(self, event: MarketEvent) -> None:
        before = self.intake.coalesced
        ready = self.intake.offer(event)
        if self.intake.coalesced != before:
            self.metrics.coalesced.inc()
        if ready is not None:
            self.dispatch(ready)

    def dispatch(self, event: MarketEvent) -> None:
        self.log.bind(event_id=event.event_id).debug(
            "event {} {} @ {}", event.kind, event.symbol, event.price
        )
        self.expiry[event.symbol] = self.after(
            self.settings.watchdog.event_timeout_s, _Expire(event.symbol, event.event_id)
        )
        self.send(CONTEXT, event)

    def on_EventDone(self, done: EventDone) -> None:
        if self.intake.inflight.get(done.symbol) == done.event_id:
            timer = self.expiry.pop(done.symbol, None)
            if timer is not None:
                timer.cancel()
        nxt = self.intake.done(done.symbol, done.event_id)
        if nxt is not None:
            self.dispatch(nxt)

    def on__Expire(self, msg: _Expire) -> None:
        if self.intake.inflight.get(msg.symbol) != msg.event_id:
            return
        self.log.bind(event_id=msg.event_id).error(
            "event for {} did not finish within {}s: failed",
            msg.symbol,
            self.settings.watchdog.event_timeout_s,
        )
        done = EventDone(
            event_id=msg.event_id,
            symbol=msg.symbol,
            outcome=Outcome.TIMEOUT,
            stage="cycle",
            detail="whole cycle past its timeout",
        )
        self.send(WATCHDOG, done)
        self.on_EventDone(done)

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.settings.feed.kind,
            "ticks": self.ticks,
            "bad_ticks": dict(self.bad),
            "inflight": len(self.intake.inflight),
            "waiting": len(self.intake.waiting),
            "coalesced": self.intake.coalesced,
            "vix": self.vix,
        }


def new_event_id() -> str:
    return "ev-" + uuid.uuid4().hex[:16]
