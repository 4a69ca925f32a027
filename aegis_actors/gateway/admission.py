"""The gateway's admission: validate prints, price them, and admit events one per symbol.

Every valid print goes to the cache and, in batches, to execution (prices for fills and
exits); events go to the context loader one per symbol at a time (latest wins), and each
event's end comes back as `EventDone`, which frees the symbol. Calendar, news and system
events (mode changes, network tier steps) enter through the same intake. A whole cycle
past its timeout is failed here, with one timer at a time for every event in flight.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.gateway.hold import Held
from aegis_actors.gateway.intake import Intake, PendingTick, Waiting
from aegis_actors.gateway.ticks import check_tick
from aegis_actors.messages import (
    T0,
    EventDone,
    EventKind,
    MarketEvent,
    ModeChange,
    Outcome,
    RoleLoad,
    Ticks,
    VolatilityIndex,
)
from aegis_actors.runtime import CONTEXT, EXECUTION, POSTURE, WATCHDOG

RECENT = 50  # dispatched events kept for `status`
DROP_LOG_BURST = 20  # bad-input lines logged per reason per window (all are counted)
DROP_LOG_WINDOW_S = 10.0
HELD_SINCE = "held_since"  # stamp: when a waiting event was detected (its t0 is admission)
HOLD_LOG_EVERY_S = 60.0  # one warning line a minute while roles are saturated

Batch = list[tuple[str, float, float, float, float | None]]


@dataclass(frozen=True)
class _Expire:
    """Timer: the oldest in-flight event's whole-cycle deadline has come."""


class Admission(AegisActor):
    """The market actor's half that does not care where prints come from."""

    def setup_admission(self) -> None:
        feed = self.settings.feed
        self.symbols = frozenset(feed.symbols)
        self.vix_symbol = feed.vix_symbol
        self.known = self.symbols | {feed.vix_symbol}
        self.last_ts: dict[str, float] = {}
        self.intake = Intake()
        self.held = Held()  # events held back while an AI role is saturated
        self.hold_logged = float("-inf")
        self.ticks = 0
        self.bad: dict[str, int] = {}
        self.drop_log: dict[str, list[float]] = {}  # reason -> [window start, logged, hushed]
        self.vix: float | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.events_sent = 0
        self._ev_prefix = "ev-" + uuid.uuid4().hex[:8]
        self._ev_seq = 0
        # Whole-cycle deadlines in dispatch order (all share one timeout, so the oldest is
        # first): one timer at a time instead of one per event.
        self.deadlines: deque[tuple[float, str, str]] = deque()
        self.expiry_armed = False

    # -- prints ------------------------------------------------------------------------

    def accept(
        self,
        rx: float,
        symbol: Any,
        price: Any,
        volume: Any,
        ts: Any,
        open_price: Any,
        batch: Batch,
    ) -> bool:
        """Validate one print; a good one is priced, batched for execution and offered."""
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
            self.drop(reason, (symbol, price, volume, ts))
            return False
        price, volume, ts = float(price), float(volume), float(ts)
        if not (isinstance(open_price, int | float) and math.isfinite(open_price)):
            open_price = None
        self.last_ts[symbol] = ts
        self.rt.cache.push_price(symbol, price, ts)
        batch.append((symbol, price, volume, ts, open_price))
        pending = PendingTick(symbol, price, volume, ts)
        if self.offer(symbol, pending):
            self.dispatch(self.tick_event(pending, rx))
        return True

    def accept_vix(self, value: Any, ts: Any) -> bool:
        reason = check_tick(
            self.vix_symbol,
            value,
            0.0,
            ts,
            known=self.known,
            last_ts=self.last_ts.get(self.vix_symbol),
            now=self.clock.now(),
        )
        if reason is not None:
            self.drop(reason, (self.vix_symbol, value, ts))
            return False
        self.last_ts[self.vix_symbol] = float(ts)
        return True

    def flush(
        self,
        batch: Batch,
        vix: tuple[float, float] | None,
    ) -> None:
        if batch:
            self.ticks += len(batch)
            self.metrics.ticks.inc(len(batch))
            self.send(EXECUTION, Ticks.model_construct(ticks=batch))
        if vix is not None:
            self.on_volatility(*vix)

    def drop(self, reason: str, raw: Any) -> None:
        """A bad frame or print: one log line and a counter per reason, then carry on.

        A flood of bad input is logged at most `DROP_LOG_BURST` lines per reason per
        `DROP_LOG_WINDOW_S`; the rest are counted and summed up in the next line."""
        self.bad[reason] = self.bad.get(reason, 0) + 1
        self.metrics.bad_ticks.labels(reason).inc()
        now = self.clock.now()
        window = self.drop_log.get(reason)
        if window is None or now - window[0] >= DROP_LOG_WINDOW_S:
            if window is not None and window[2]:
                self.log.warning("dropped ({}): {} more not logged", reason, window[2])
            window = self.drop_log[reason] = [now, 0, 0]
        if window[1] < DROP_LOG_BURST:
            window[1] += 1
            self.log.warning("dropped ({}): {}", reason, short_repr(raw))
        else:
            window[2] += 1

    def ingest(self, symbol: Any, price: Any, volume: Any, ts: Any) -> bool:
        """Validate one print and feed it on; False (with a counted reason) if dropped."""
        batch: Batch = []
        ok = self.accept(self.clock.now(), symbol, price, volume, ts, None, batch)
        self.flush(batch, None)
        return ok

    def on_volatility(self, value: float, ts: float) -> None:
        self.vix = value
        self.send(POSTURE, VolatilityIndex(value=value, ts=ts))

    # -- the intake ------------------------------------------------------------------

    def on_MarketEvent(self, event: MarketEvent) -> None:
        """Calendar, news and system events enter here too."""
        if T0 not in event.stamps:
            event = event.stamp(T0, self.clock.now())
        if self.offer(event.symbol, event):
            self.dispatch(event)

    def offer(self, symbol: str, item: Any) -> bool:
        """The intake's answer, counting an event replaced by a newer one (latest wins)."""
        before = self.intake.coalesced
        free = self.intake.offer(symbol, item)
        if self.intake.coalesced != before:
            self.metrics.coalesced.inc()
        if free and (self.held.saturated or symbol in self.held.items):
            return self.hold_back(symbol, item)
        return free

    # -- backpressure from the AI roles (RoleLoad) -------------------------------------

    def hold_back(self, symbol: str, item: Waiting) -> bool:
        """A role is saturated: the event waits here (latest wins); True = dispatch now."""
        if not self.held.saturated:  # a held one for this symbol: the newer goes instead
            self.held.items.pop(symbol)
            self.held.shed += 1
            self.metrics.shed.labels("roles_saturated").inc()
            return True
        if self.held.hold(symbol, item):
            self.metrics.shed.labels("roles_saturated").inc()
        now = self.clock.now()
        if now - self.hold_logged >= HOLD_LOG_EVERY_S:
            self.hold_logged = now
            self.log.warning(
                "AI roles saturated ({}): holding new events back, latest per symbol "
                "({} waiting, {} shed so far)",
                self.held.busy(),
                len(self.held.items),
                self.held.shed,
            )
        return False

    def on_RoleLoad(self, load: RoleLoad) -> None:
        self.release_held(self.held.note(load))

    def release_held(self, n: int) -> None:
        for symbol, item in self.held.take(n):
            if self.intake.offer(symbol, item):  # else it waits for the symbol's event
                self.release(item)

    def on_ModeChange(self, m: ModeChange) -> None:
        """The watchdog's own state enters the pipeline as a system event (SPEC 1.3)."""
        self.system_events(f"trading mode {m.old} -> {m.new}: {m.reason}")

    def system_events(self, headline: str) -> None:
        now = self.clock.now()
        for symbol in sorted(self.symbols):
            self.on_MarketEvent(
                MarketEvent(
                    event_id=self.next_event_id(),
                    kind=EventKind.SYSTEM,
                    symbol=symbol,
                    ts=now,
                    headline=headline[:500],
                    source="system",
                    stamps={T0: now},
                )
            )

    def next_event_id(self) -> str:
        self._ev_seq += 1
        return f"{self._ev_prefix}{self._ev_seq:08x}"

    def tick_event(self, t: PendingTick, t0: float) -> MarketEvent:
        return MarketEvent(
            event_id=self.next_event_id(),
            kind=EventKind.TICK,
            symbol=t.symbol,
            price=t.price,
            volume=t.volume,
            ts=t.ts,
            stamps={T0: t0},
        )

    def dispatch(self, event: MarketEvent) -> None:
        self.intake.admit(event.symbol, event.event_id)
        self.events_sent += 1
        self.recent.append(
            {
                "event_id": event.event_id,
                "kind": event.kind.value,
                "symbol": event.symbol,
                "price": event.price,
                "headline": event.headline,
                "ts": self.clock.now(),
            }
        )
        # Logged per dispatched event (not per tick: waiting ticks were coalesced), so
        # `tail --event` follows the path from the gateway on.
        self.log.bind(event_id=event.event_id).debug(
            "event {} {} @ {} {}", event.kind, event.symbol, event.price, event.headline
        )
        self.deadlines.append(
            (
                self.clock.now() + self.settings.watchdog.event_timeout_s,
                event.symbol,
                event.event_id,
            )
        )
        if not self.expiry_armed:
            self.arm_expiry()
        self.send(CONTEXT, event)

    def release(self, nxt: Waiting | None) -> None:
        if nxt is None:
            return
        now = self.clock.now()
        if isinstance(nxt, PendingTick):
            self.dispatch(self.tick_event(nxt, now))
        else:  # admitted now, after waiting its turn by design: its SLA clock starts now
            self.dispatch(nxt.stamp(T0, now).stamp(HELD_SINCE, nxt.stamps.get(T0, now)))

    def on_EventDone(self, done: EventDone) -> None:
        self.release(self.intake.done(done.symbol, done.event_id))
        if self.held.items and not self.held.saturated:
            self.release_held(1)  # one event out, one held event in

    def arm_expiry(self) -> None:
        inflight = self.intake.inflight
        while self.deadlines and inflight.get(self.deadlines[0][1]) != self.deadlines[0][2]:
            self.deadlines.popleft()  # finished in time
        self.expiry_armed = bool(self.deadlines)
        if self.deadlines:
            self.after(max(0.0, self.deadlines[0][0] - self.clock.now()), _Expire())

    def on__Expire(self, _msg: _Expire) -> None:
        now = self.clock.now()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, symbol, event_id = self.deadlines.popleft()
            if self.intake.inflight.get(symbol) == event_id:
                self.expire(symbol, event_id)
        self.arm_expiry()

    def expire(self, symbol: str, event_id: str) -> None:
        self.log.bind(event_id=event_id).error(
            "event for {} did not finish within {}s: failed",
            symbol,
            self.settings.watchdog.event_timeout_s,
        )
        done = EventDone(
            event_id=event_id,
            symbol=symbol,
            outcome=Outcome.TIMEOUT,
            stage="cycle",
            detail="whole cycle past its timeout",
        )
        self.send(WATCHDOG, done)
        self.on_EventDone(done)

    def admission_status(self) -> dict[str, Any]:
        return {
            "kind": self.settings.feed.kind,
            "ticks": self.ticks,
            "bad_ticks": dict(self.bad),
            "inflight": len(self.intake.inflight),
            "waiting": len(self.intake.waiting),
            "coalesced": self.intake.coalesced,
            "held": len(self.held.items),
            "held_total": self.held.held,
            "shed": {"roles_saturated": self.held.shed},
            "roles_saturated": self.held.busy() or None,
            "events": self.events_sent,
            "vix": self.vix,
            "recent": list(self.recent)[-10:],
        }


def short_repr(raw: Any, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else repr(raw)
    return text if len(text) <= limit else text[:limit] + "..."


def new_event_id() -> str:
    return "ev-" + uuid.uuid4().hex[:16]
