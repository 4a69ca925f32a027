"""The market actor: the feed, tick validation, network tiers, and the gateway's intake.

Every valid print goes to the cache and, in batches, to execution (prices for fills and
exits); events go to the context loader one per symbol at a time (latest wins), and each
event's end comes back here as `EventDone`, which frees the symbol. Calendar, news and
system events (mode changes, network tier steps) enter through the same intake.

With a websocket feed the reader thread only appends frames to a deque and wakes this
actor when it is not already awake, so frames arrive in batches and the reader never
waits on the mailbox. The silence since the last frame (or pong) is measured on the
clock and walks the SPEC 4.2 tiers.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import pykka

from aegis_actors.base import AegisActor
from aegis_actors.context import K_FEED
from aegis_actors.gateway.intake import Intake, PendingTick, Waiting
from aegis_actors.gateway.protocols import DECODERS, decode_frame
from aegis_actors.gateway.synthetic import SyntheticMarket
from aegis_actors.gateway.ticks import check_tick
from aegis_actors.gateway.tiers import NAMES, OK, SAFE, SHUTDOWN, STALE, NetworkTiers, Step
from aegis_actors.gateway.ws_feed import ClientConfig, FeedClient
from aegis_actors.messages import (
    T0,
    Alert,
    AlertLevel,
    EventDone,
    EventKind,
    MarketEvent,
    ModeChange,
    Outcome,
    RequestMode,
    Ticks,
    TradingMode,
    VolatilityIndex,
)
from aegis_actors.runtime import CONTEXT, EXECUTION, POSTURE, WATCHDOG

RECENT = 50  # dispatched events kept for `status`
DROP_LOG_BURST = 20  # bad-input lines logged per reason per window (all are counted)
DROP_LOG_WINDOW_S = 10.0
WS_KINDS = ("alpaca", "json")
_TIER_ALERT = {
    OK: AlertLevel.INFO,
    STALE: AlertLevel.WARNING,
    SAFE: AlertLevel.CRITICAL,
    SHUTDOWN: AlertLevel.CRITICAL,
}
_TIER_MODE = {SAFE: TradingMode.SAFE, SHUTDOWN: TradingMode.SHUTDOWN}


@dataclass(frozen=True)
class _Pump:
    """Timer: produce the next synthetic tick round."""


@dataclass(frozen=True)
class _Frames:
    """The reader thread put frames in the inbox."""


@dataclass(frozen=True)
class _Liveness:
    """Timer: measure the feed's silence against the network tiers."""


@dataclass(frozen=True)
class _FeedNote:
    """The reader thread's news: connected, disconnected, retry, refused."""

    what: str
    data: dict[str, Any]


@dataclass(frozen=True)
class _Expire:
    """Timer: the oldest in-flight event's whole-cycle deadline has come."""


class MarketFeed(AegisActor):
    def on_start(self) -> None:
        feed = self.settings.feed
        self.symbols = frozenset(feed.symbols)
        self.vix_symbol = feed.vix_symbol
        self.known = self.symbols | {feed.vix_symbol}
        self.last_ts: dict[str, float] = {}
        self.intake = Intake()
        self.ticks = 0
        self.frames = 0
        self.bad: dict[str, int] = {}
        self.drop_log: dict[str, list[float]] = {}  # reason -> [window start, logged, hushed]
        self.feed_errors = 0
        self.vix: float | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.tier_steps: deque[dict[str, Any]] = deque(maxlen=20)
        self.events_sent = 0
        self._ev_prefix = "ev-" + uuid.uuid4().hex[:8]
        self._ev_seq = 0
        self.source: SyntheticMarket | None = None
        self.client: FeedClient | None = None
        self.inbox: deque[tuple[float, Any]] = deque()
        self.wake_pending = False
        # Whole-cycle deadlines in dispatch order (all share one timeout, so the oldest is
        # first): one timer at a time instead of one per event.
        self.deadlines: deque[tuple[float, str, str]] = deque()
        self.expiry_armed = False
        self.link: dict[str, Any] = {"connected": False, "role": None, "url": None}
        self.link_counts = {"connects": 0, "failovers": 0, "disconnects": 0, "failed": 0}
        self.tiers = NetworkTiers(feed.stale_after_s, feed.safe_after_s, feed.shutdown_after_s)
        self.last_seen = self.clock.now()
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
        elif feed.kind in WS_KINDS:
            self.start_client()
        else:
            self.log.warning("feed kind {} is not available in this build", feed.kind)

    def start_client(self) -> None:
        feed = self.settings.feed
        self.decode = DECODERS[feed.kind]
        saved = self.rt.cache.get_json(K_FEED)
        if saved and saved.get("tier", OK) > OK:  # a restart in the middle of an outage
            self.tiers.tier = int(saved["tier"])
            self.last_seen = float(saved.get("since", self.last_seen))
        tradable = list(feed.symbols)
        watched = tradable + ([feed.vix_symbol] if feed.vix_symbol not in self.symbols else [])
        cfg = ClientConfig(
            urls=[u for u in (feed.url, feed.backup_url) if u],
            protocol=feed.kind,
            key=feed.key.get_secret_value(),
            secret=feed.secret.get_secret_value(),
            trades=watched,
            quotes=tradable if feed.subscribe_quotes else [],
            bars=tradable if feed.subscribe_bars else [],
            reconnect_initial_s=feed.reconnect_initial_s,
            reconnect_max_s=feed.reconnect_max_s,
            reconnect_jitter=feed.reconnect_jitter,
            connect_timeout_s=feed.connect_timeout_s,
            ping_every_s=feed.ping_every_s,
            ping_timeout_s=feed.ping_timeout_s,
        )
        me = self.actor_ref

        def deliver(rx: float, frame: Any) -> None:  # reader thread: append, wake, never wait
            self.inbox.append((rx, frame))
            if not self.wake_pending:
                self.wake_pending = True
                try:
                    me.tell(_Frames())
                except pykka.ActorDeadError:
                    pass  # stopping: the reader is being told to end too

        def report(what: str, data: dict[str, Any]) -> None:
            try:
                me.tell(_FeedNote(what, data))
            except pykka.ActorDeadError:
                pass

        self.client = FeedClient(cfg, self.clock, deliver, report)
        self.client.start()
        self.after(feed.liveness_check_s, _Liveness())
        self.log.info(
            "{} websocket feed: {} symbols, primary {}, backup {}",
            feed.kind,
            len(self.symbols),
            feed.url,
            feed.backup_url or "none",
        )

    def stopping(self) -> None:
        if self.client is not None and not self.client.stop(timeout=2.0):
            self.log.warning("feed reader thread did not end within 2s")

    # -- frames from the websocket ------------------------------------------------------

    def on__Frames(self, _msg: _Frames) -> None:
        self.wake_pending = False
        inbox = self.inbox
        decode = self.decode
        batch: list[tuple[str, float, float, float, float | None]] = []
        vix: tuple[float, float] | None = None
        n = 0
        limit = self.settings.feed.batch_max
        while inbox and n < limit:
            rx, frame = inbox.popleft()
            n += 1
            self.seen(rx)
            if frame is None:
                continue  # a pong: the link is alive
            items = decode_frame(frame)
            if isinstance(items, str):
                self.drop(items, frame)
                continue
            for obj in items:
                item = decode(obj)
                if item[0] == "print":
                    _, symbol, price, volume, ts, open_price = item
                    if symbol == self.vix_symbol:  # the volatility index drives the posture
                        ok = (
                            self.accept(rx, symbol, price, volume, ts, open_price, batch)
                            if symbol in self.symbols
                            else self.accept_vix(price, ts)
                        )
                        if ok:
                            vix = (float(price), float(ts))
                        continue
                    self.accept(rx, symbol, price, volume, ts, open_price, batch)
                elif item[0] == "control":
                    self.control(item[1], item[2])
                else:
                    self.drop(item[1], item[2])
        self.frames += n
        self.flush(batch, vix)
        if inbox and not self.wake_pending:
            self.wake_pending = True
            self.actor_ref.tell(_Frames())

    def accept(
        self,
        rx: float,
        symbol: Any,
        price: Any,
        volume: Any,
        ts: Any,
        open_price: Any,
        batch: list[tuple[str, float, float, float, float | None]],
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
        if self.intake.offer(symbol, pending):
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
        batch: list[tuple[str, float, float, float, float | None]],
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
            self.log.warning("dropped ({}): {}", reason, _short(raw))
        else:
            window[2] += 1

    def control(self, tag: str, obj: dict[str, Any]) -> None:
        if tag == "error":
            self.feed_errors += 1
            self.metrics.errors.labels("feed_error").inc()
            self.log.error("feed error message: {}", _short(obj))
        else:
            self.log.debug("feed {}: {}", tag, _short(obj))

    # -- the synthetic feed -------------------------------------------------------------

    def on__Pump(self, _msg: _Pump) -> None:
        assert self.source is not None
        prints, vix = self.source.step()
        now = self.clock.now()
        batch: list[tuple[str, float, float, float, float | None]] = []
        for p in prints:
            self.accept(now, p.symbol, p.price, p.volume, now, None, batch)
        self.flush(batch, (vix, now))
        self.after(self.settings.feed.tick_interval_s, _Pump())

    def ingest(self, symbol: Any, price: Any, volume: Any, ts: Any) -> bool:
        """Validate one print and feed it on; False (with a counted reason) if dropped."""
        batch: list[tuple[str, float, float, float, float | None]] = []
        ok = self.accept(self.clock.now(), symbol, price, volume, ts, None, batch)
        self.flush(batch, None)
        return ok

    def on_volatility(self, value: float, ts: float) -> None:
        self.vix = value
        self.send(POSTURE, VolatilityIndex(value=value, ts=ts))

    # -- liveness and the network tiers (SPEC 4.2) ---------------------------------------

    def seen(self, rx: float) -> None:
        """A frame arrived: if the feed had gone quiet past a tier, it is back."""
        if rx <= self.last_seen:
            return
        silent = rx - self.last_seen
        self.last_seen = rx
        if self.tiers.tier != OK:
            step = self.tiers.data_back(silent)
            if step is not None:
                self.take(step)

    def on__Liveness(self, _msg: _Liveness) -> None:
        if self.inbox:  # frames already here but not yet decoded count as data
            self.seen(self.inbox[-1][0])
        silent = self.clock.now() - self.last_seen
        for step in self.tiers.check(silent):
            self.take(step)
        self.after(self.settings.feed.liveness_check_s, _Liveness())

    def take(self, step: Step) -> None:
        """One tier step: logged, alerted, in status, emitted, and acted on."""
        now = self.clock.now()
        if step.tier == OK:
            text = f"market data back after {step.silent_s:.1f}s of silence"
            self.log.warning(text)
            self.rt.cache.set_json(K_FEED, {"tier": OK, "stale": False, "since": None})
        else:
            text = f"market data silent for {step.silent_s:.1f}s: tier {step.name}"
            self.log.error(text)
            self.rt.cache.set_json(
                K_FEED, {"tier": step.tier, "stale": True, "since": self.last_seen}
            )
        self.tier_steps.append({"tier": step.name, "silent_s": round(step.silent_s, 3), "ts": now})
        self.send(
            WATCHDOG,
            Alert(
                alert_id="al-" + uuid.uuid4().hex[:12],
                level=_TIER_ALERT[step.tier],
                kind="feed_tier",
                message=text,
                ts=now,
            ),
        )
        self.rt.emit("tier", tier=step.name, silent_s=round(step.silent_s, 3), source="feed")
        mode = _TIER_MODE.get(step.tier)
        if mode is not None:  # safe: execution cancels every open order and liquidates
            self.send(WATCHDOG, RequestMode(target=mode, reason=text))
        self.system_events(f"network tier {step.name}: {text}")

    def on__FeedNote(self, note: _FeedNote) -> None:
        d = note.data
        if note.what == "connected":
            self.link_counts["connects"] += 1
            backup = d.get("role") == "backup"
            if backup and self.link.get("role") != "backup":
                self.link_counts["failovers"] += 1
                self.send_alert(AlertLevel.WARNING, "feed_failover", f"feed failed over to {d}")
            self.link = {"connected": True, "role": d.get("role"), "url": d.get("url")}
            self.log.info("feed connected to {} {}", d.get("role"), d.get("url"))
        elif note.what == "disconnected":
            self.link_counts["disconnects"] += 1
            self.link = {**self.link, "connected": False}
            self.log.warning("feed disconnected from {}: {}", d.get("url"), d.get("reason"))
        elif note.what in ("connect_failed", "refused"):
            self.link_counts["failed"] += 1
            self.metrics.errors.labels(f"feed_{note.what}").inc()
            self.log.warning("feed {} {}: {}", d.get("role"), d.get("url"), d.get("error"))
        else:
            self.log.debug("feed {}: {}", note.what, d)

    def send_alert(self, level: AlertLevel, kind: str, message: str) -> None:
        alert = Alert(
            alert_id="al-" + uuid.uuid4().hex[:12],
            level=level,
            kind=kind,
            message=message,
            ts=self.clock.now(),
        )
        self.send(WATCHDOG, alert)

    # -- the intake ------------------------------------------------------------------

    def on_MarketEvent(self, event: MarketEvent) -> None:
        """Calendar, news and system events enter here too."""
        if T0 not in event.stamps:
            event = event.stamp(T0, self.clock.now())
        if self.intake.offer(event.symbol, event):
            self.dispatch(event)

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
        # A tick's entry is TRACE: at DEBUG the JSON sink costs ~120 us a line, more than
        # the rest of the path, and a tick's trail starts at the roles anyway.
        level = "TRACE" if event.kind is EventKind.TICK else "DEBUG"
        self.log.bind(event_id=event.event_id).log(
            level, "event {} {} @ {} {}", event.kind, event.symbol, event.price, event.headline
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
        if isinstance(nxt, PendingTick):
            self.dispatch(self.tick_event(nxt, self.clock.now()))
        else:
            self.dispatch(nxt)

    def on_EventDone(self, done: EventDone) -> None:
        self.release(self.intake.done(done.symbol, done.event_id))

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

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.settings.feed.kind,
            "ticks": self.ticks,
            "bad_ticks": dict(self.bad),
            "inflight": len(self.intake.inflight),
            "waiting": len(self.intake.waiting),
            "coalesced": self.intake.coalesced,
            "events": self.events_sent,
            "vix": self.vix,
            "recent": list(self.recent)[-10:],
        }
        if self.client is not None:
            out.update(
                frames=self.frames,
                feed_errors=self.feed_errors,
                link={**self.link, **self.link_counts},
                tier=NAMES[self.tiers.tier],
                silent_s=round(self.clock.now() - self.last_seen, 3),
                tier_steps=list(self.tier_steps),
            )
        return out


def _short(raw: Any, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else repr(raw)
    return text if len(text) <= limit else text[:limit] + "..."


def new_event_id() -> str:
    return "ev-" + uuid.uuid4().hex[:16]
