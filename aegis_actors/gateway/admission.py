"""The gateway's admission: validate prints, price them, and admit events one per symbol.

Every valid print goes to the cache and, in batches, to execution (prices for fills and
exits); events go to the context loader one per symbol at a time (latest wins), and each
event's end comes back as `EventDone`, which frees the symbol. Calendar, news and system
events (mode changes, network tier steps) enter through the same intake. A whole cycle
past its timeout is failed here, with one timer at a time for every event in flight.

Each event's end is reported here once and passed on to the watchdog from here, so an
event is counted once even when a late report follows its timeout. At most
`feed.max_inflight` events are in flight: past that, intake waits and sheds (per reason,
one warning line a minute) instead of queues growing inside the tree.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.gateway.intake import STALE, Intake, PendingTick
from aegis_actors.gateway.ticks import check_tick
from aegis_actors.hush import Hush
from aegis_actors.messages import CONTEXT as CONTEXT_STAMP
from aegis_actors.messages import (
    DONE,
    T0,
    EventDone,
    EventKind,
    EventShed,
    FlowReply,
    GetFlow,
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
# The in-flight window adapts (AIMD) to the queueing an event meets between dispatch and
# the context loader: past QUEUE_HIGH_MS it is cut (at most every CUT_EVERY_S), and it
# grows by one per window's worth of events that met none of it.
QUEUE_HIGH_MS = 20.0
CUT_FACTOR = 0.7
CUT_EVERY_S = 0.1
MIN_WINDOW = 4
START_WINDOW = 32
# With LLM roles an event is in flight for seconds: at roles.events_per_s the pipeline holds
# rate x cycle events, so the window never goes below that (unless a role is saturated)
# and may grow to rate x the whole-cycle timeout.
LLM_CYCLE_S = 4.0  # SPEC 5.1 whole-cycle target
HELD_SINCE = "held_since"  # stamp: when a waiting event was detected (its t0 is admission)

Batch = list[tuple[str, float, float, float, float | None]]


_TICK = EventKind.TICK


@dataclass(frozen=True)
class _Expire:
    """Timer: the oldest in-flight event's whole-cycle deadline has come."""


class Admission(AegisActor):
    """The market actor's half that does not care where prints come from."""

    def setup_admission(self) -> None:
        feed = self.settings.feed
        self.linger_s = feed.dispatch_linger_ms / 1000.0  # events go out in batches
        self.symbols = frozenset(feed.symbols)
        self.vix_symbol = feed.vix_symbol
        self.known = self.symbols | {feed.vix_symbol}
        self.last_ts: dict[str, float] = {}
        # the window starts low and grows (AIMD) up to feed.max_inflight
        start = min(feed.max_inflight, START_WINDOW)
        self.intake = Intake(window=start, max_wait_s=feed.max_wait_s)
        self.max_window = feed.max_inflight
        self.min_window = MIN_WINDOW
        roles = self.settings.roles
        if any(r.backend == "llm" for r in (roles.analyst, roles.verifier, roles.commander)):
            self.min_window = math.ceil(roles.events_per_s * LLM_CYCLE_S)
            timeout = self.settings.watchdog.event_timeout_s
            self.max_window = max(self.max_window, math.ceil(roles.events_per_s * timeout))
            self.intake.window = max(self.intake.window, self.min_window)
        self.role_load: dict[str, RoleLoad] = {}  # each LLM role's last report
        self.role_log = Hush(burst=1, window_s=60.0)
        self.dispatched_at: dict[str, float] = {}  # symbol -> when its event was dispatched
        self.last_cut = 0.0
        self.good = 0
        self.shed_seen: dict[str, int] = {}  # reason -> shed already counted in metrics
        self.shed_metric: dict[str, Any] = {}  # reason -> its counter child
        self.shed_log = Hush(burst=1, window_s=60.0)
        self.late_reports = 0
        self.ticks = 0
        self.bad: dict[str, int] = {}
        self.drop_log: dict[str, list[float]] = {}  # reason -> [window start, logged, hushed]
        self.vix: float | None = None
        self.recent: deque[tuple[MarketEvent, float]] = deque(maxlen=RECENT)  # (event, sent)
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
        now = self.clock.now()  # one reading for the print's checks and its dispatch
        reason = check_tick(
            symbol,
            price,
            volume,
            ts,
            known=self.symbols,
            last_ts=self.last_ts.get(symbol) if isinstance(symbol, str) else None,
            now=now,
        )
        if reason is not None:
            self.drop(reason, (symbol, price, volume, ts))
            return False
        price, volume, ts = float(price), float(volume), float(ts)
        if not (isinstance(open_price, int | float) and math.isfinite(open_price)):
            open_price = None
        self.last_ts[symbol] = ts
        self.rt.cache.push_price(symbol, price, ts)
        batch.append((symbol, price, volume, ts, open_price))  # prices are never shed
        if self.stale_on_arrival(rx, now):
            return True
        pending = PendingTick(symbol, price, volume, ts)
        if self.offer(symbol, pending, now):
            self.dispatch(self.tick_event(pending, rx), now)
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
            self.send(EXECUTION, Ticks.trusted(ticks=batch))
        if vix is not None:
            self.new_volatility_index(*vix)

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

    def new_volatility_index(self, value: float, ts: float) -> None:
        self.vix = value
        self.send(POSTURE, VolatilityIndex(value=value, ts=ts))

    # -- the intake ------------------------------------------------------------------

    def on_MarketEvent(self, event: MarketEvent) -> None:
        """Calendar, news and system events enter here too."""
        now = self.clock.now()  # one reading for the event's checks and its dispatch
        if T0 not in event.stamps:
            event = event.stamp(T0, now)
        elif event.kind is _TICK and self.stale_on_arrival(event.stamps[T0], now):
            return
        if self.offer(event.symbol, event, now):
            self.dispatch(event, now)

    def stale_on_arrival(self, detected: float, now: float) -> bool:
        """A tick that already waited past `max_wait_s` (in this mailbox, behind a busy
        actor) is shed, counted, instead of failing its detect-to-analysis SLA later."""
        if now - detected <= self.intake.max_wait_s:
            return False
        self.intake.shed[STALE] = self.intake.shed.get(STALE, 0) + 1
        self.count_shed()
        return True

    def offer(self, symbol: str, item: Any, now: float) -> bool:
        """The intake's answer, counting an event replaced by a newer one (latest wins)."""
        before = self.intake.coalesced
        free = self.intake.offer(symbol, item, now)
        if self.intake.coalesced != before:
            self.metrics.coalesced.inc()
            self.count_shed()
        if not free and self.intake.ready and len(self.intake.inflight) < self.intake.window:
            self.release()  # room in the window (it grew): never leave the queue standing
        return free

    def count_shed(self) -> None:
        """Shed events into the metric by reason, and one warning line a minute."""
        for reason, n in self.intake.shed.items():
            new = n - self.shed_seen.get(reason, 0)
            if new:
                child = self.shed_metric.get(reason)
                if child is None:  # looked up once per reason: overload sheds per event
                    child = self.shed_metric[reason] = self.metrics.shed.labels(reason)
                child.inc(new)
                self.shed_seen[reason] = n
        hushed = self.shed_log.allow("shed", self.clock.now())
        if hushed is not None:
            self.log.warning(
                "overload: shedding events at the gateway ({} in flight, window {}; "
                "shed so far by reason {})",
                len(self.intake.inflight),
                self.intake.window,
                dict(self.intake.shed),
            )

    # -- backpressure from the AI roles (RoleLoad) -------------------------------------

    def saturated_roles(self) -> str:
        """e.g. 'analyst 136/151' for each role whose pool is at its high mark."""
        return ", ".join(
            f"{r} {x.in_flight}/{x.capacity}" for r, x in self.role_load.items() if x.saturated
        )

    def window_floor(self) -> int:
        return MIN_WINDOW if self.saturated_roles() else self.min_window

    def on_RoleLoad(self, load: RoleLoad) -> None:
        """An LLM role's pool crossed a mark. Saturated: the window closes at what is in
        flight, so new events wait here (latest per symbol wins; a tick too old is shed,
        both counted) instead of queueing in the role past its budget. Free again: the
        window reopens to its floor and what waits goes."""
        self.role_load[load.role] = load
        intake = self.intake
        if load.saturated:
            intake.window = max(MIN_WINDOW, min(intake.window, len(intake.inflight)))
            self.good = 0
            if self.role_log.allow("roles", self.clock.now()) is not None:
                self.log.warning(
                    "AI roles saturated ({}): window closed at {} events in flight; new "
                    "events wait (latest per symbol) or are shed",
                    self.saturated_roles(),
                    intake.window,
                )
            return
        if not self.saturated_roles():
            intake.window = max(intake.window, self.window_floor())
            self.release()

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
        """The event of a print `check_tick` passed: its values are checked already, so
        the message is built unvalidated (floats, as validation would have made them)."""
        return MarketEvent.trusted(
            event_id=self.next_event_id(),
            kind=_TICK,
            symbol=t.symbol,
            price=float(t.price),
            volume=float(t.volume),
            ts=float(t.ts),
            stamps={T0: float(t0)},
        )

    def dispatch(self, event: MarketEvent, now: float) -> None:
        self.intake.admit(event.symbol, event.event_id)
        self.dispatched_at[event.symbol] = now
        self.events_sent += 1
        self.recent.append((event, now))  # made readable only when status asks
        # Logged per dispatched event (not per tick: waiting ticks were coalesced), so
        # `tail --event` follows the path from the gateway on.
        self.trace(
            event.event_id,
            "event {} {} @ {} {}",
            event.kind,
            event.symbol,
            event.price,
            event.headline,
        )
        self.deadlines.append(
            (now + self.settings.watchdog.event_timeout_s, event.symbol, event.event_id)
        )
        if not self.expiry_armed:
            self.arm_expiry()
        self.send(CONTEXT, event)

    def release(self) -> None:
        """Dispatch what waits, oldest first, while the window has room."""
        now = self.clock.now()
        stale = self.intake.shed.get(STALE, 0)
        while (nxt := self.intake.next(now)) is not None:
            if isinstance(nxt, PendingTick):
                self.dispatch(self.tick_event(nxt, now), now)
            else:  # admitted now, after waiting its turn by design: its SLA clock starts now
                self.dispatch(nxt.stamp(T0, now).stamp(HELD_SINCE, nxt.stamps.get(T0, now)), now)
        if self.intake.shed.get(STALE, 0) != stale:
            self.count_shed()

    def on_EventDone(self, done: EventDone) -> None:
        """An event's end, from whichever stage ended it: counted once (at the watchdog)."""
        if not self.intake.done(done.symbol, done.event_id, self.clock.now()):
            self.late_reports += 1  # it had already timed out here: counted then
            return
        self.adapt(done)
        if DONE not in done.stamps:
            done = done.stamp(DONE, self.clock.now())
        self.send(WATCHDOG, done)
        if self.intake.ready:  # (nothing waits: nothing to release)
            self.release()

    def on_EventShed(self, shed: EventShed) -> None:
        """An event the context loader dropped (it waited too long inside the tree): its
        symbol is free, it counts as shed, and the window is cut (the tree queues)."""
        if not self.intake.done(shed.symbol, shed.event_id, self.clock.now()):
            self.late_reports += 1  # it had already timed out here: counted then
            return
        self.dispatched_at.pop(shed.symbol, None)
        self.cut_window()
        self.good = 0
        self.intake.shed[shed.reason] = self.intake.shed.get(shed.reason, 0) + 1
        self.count_shed()
        self.release()

    def cut_window(self) -> None:
        """Multiplicative decrease, at most every CUT_EVERY_S."""
        now = self.clock.now()
        if now - self.last_cut >= CUT_EVERY_S:
            self.intake.window = max(self.window_floor(), int(self.intake.window * CUT_FACTOR))
            self.last_cut = now

    def adapt(self, done: EventDone) -> None:
        """AIMD on the queueing between dispatch and the context loader: the window
        shrinks while the pipeline queues (the CPU is short) and grows back after."""
        sent = self.dispatched_at.pop(done.symbol, None)
        loaded = done.stamps.get(CONTEXT_STAMP)
        if sent is None or loaded is None:
            return
        intake = self.intake
        if (loaded - sent - self.linger_s) * 1000.0 > QUEUE_HIGH_MS:  # the linger is ours
            self.cut_window()
            self.good = 0
        elif intake.window < self.max_window:
            self.good += 1
            if self.good >= intake.window:
                intake.window += 1
                self.good = 0

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
        self.on_EventDone(done)

    def on_GetFlow(self, _msg: GetFlow) -> FlowReply:
        return FlowReply(
            events=self.events_sent,
            inflight=len(self.intake.inflight),
            waiting=len(self.intake.waiting),
        )

    def admission_status(self) -> dict[str, Any]:
        return {
            "kind": self.settings.feed.kind,
            "ticks": self.ticks,
            "bad_ticks": dict(self.bad),
            "inflight": len(self.intake.inflight),
            "waiting": len(self.intake.waiting),
            "coalesced": self.intake.coalesced,
            "window": self.intake.window,
            "max_window": self.max_window,
            "ready": len(self.intake.ready),
            "shed": dict(self.intake.shed),
            "late_reports": self.late_reports,
            "roles_saturated": self.saturated_roles() or None,
            "events": self.events_sent,
            "vix": self.vix,
            "recent": [
                {
                    "event_id": e.event_id,
                    "kind": e.kind.value,
                    "symbol": e.symbol,
                    "price": e.price,
                    "headline": e.headline,
                    "ts": ts,
                }
                for e, ts in list(self.recent)[-10:]
            ],
        }


def short_repr(raw: Any, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else repr(raw)
    return text if len(text) <= limit else text[:limit] + "..."


def new_event_id() -> str:
    return "ev-" + uuid.uuid4().hex[:16]
