"""The market actor: where prints come from (synthetic or a websocket), and the feed's
liveness walking the SPEC 4.2 network tiers; validation and the intake are `Admission`'s.

With a websocket feed the reader thread only appends frames to a deque and wakes this
actor when it is not already awake, so frames arrive in batches and the reader never
waits on the mailbox. The silence since the last frame, pong or reconnection is measured
on the clock: back within 3 s nothing; then stale; then safe (cancel all, liquidate); then
shutdown. Each step is logged, alerted, emitted, in `status`, and enters as a system event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import pykka

from aegis_actors.context import K_FEED
from aegis_actors.gateway.admission import Admission, Batch, new_event_id, short_repr
from aegis_actors.gateway.intake import PendingTick
from aegis_actors.gateway.protocols import DECODERS, decode_frame
from aegis_actors.gateway.synthetic import SyntheticMarket
from aegis_actors.gateway.ticks import check_tick
from aegis_actors.gateway.tiers import NAMES, OK, SAFE, SHUTDOWN, STALE, NetworkTiers, Step
from aegis_actors.gateway.ws_feed import ClientConfig, FeedClient
from aegis_actors.messages import (
    AlertLevel,
    ReplayBar,
    RequestMode,
    Ticks,
    TradingMode,
)
from aegis_actors.runtime import EXECUTION, WATCHDOG

__all__ = ["MarketFeed", "new_event_id"]

WS_KINDS = ("alpaca", "json")
REPLAY_PRICE_TIMEOUT_S = 10.0  # real seconds execution may take to price one replay bar
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


class MarketFeed(Admission):
    def on_start(self) -> None:
        feed = self.settings.feed
        self.setup_admission()
        self.frames = 0
        self.feed_errors = 0
        self.tier_steps: deque[dict[str, Any]] = deque(maxlen=20)
        self.source: SyntheticMarket | None = None
        self.client: FeedClient | None = None
        self.inbox: deque[tuple[float, Any]] = deque()
        self.wake_pending = False
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
        elif feed.kind == "replay":
            self.log.info("replay feed: bars from {} at the driver's pace", feed.replay_file)
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
        batch: Batch = []
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

    def control(self, tag: str, obj: dict[str, Any]) -> None:
        if tag == "error":
            self.feed_errors += 1
            self.metrics.errors.labels("feed_error").inc()
            self.log.error("feed error message: {}", short_repr(obj))
        else:
            self.log.debug("feed {}: {}", tag, short_repr(obj))

    # -- the synthetic feed -------------------------------------------------------------

    def on__Pump(self, _msg: _Pump) -> None:
        assert self.source is not None
        prints, vix = self.source.step()
        now = self.clock.now()
        batch: Batch = []
        for p in prints:
            self.accept(now, p.symbol, p.price, p.volume, now, None, batch)
        self.flush(batch, (vix, now))
        self.after(self.settings.feed.tick_interval_s, _Pump())

    # -- the replay feed (backtest): one bar at a time, paced by the driver ----------------

    def on_ReplayBar(self, bar: ReplayBar) -> None:
        """A bar enters like a live print at its close, carrying its open so a resting
        order fills at this bar's open, never at the close it was decided on.

        Execution is asked (not told) to price the bar before its event is offered: its
        fills and their ledger writes then come before the event's context is loaded, so
        the same data gives the same decisions every run."""
        now = self.clock.now()
        symbol, ts = bar.symbol, bar.ts
        reason = check_tick(
            symbol,
            bar.close,
            bar.volume,
            ts,
            known=self.symbols,
            last_ts=self.last_ts.get(symbol),
            now=now,
        )
        if reason is not None:
            self.drop(reason, bar.model_dump())
            return
        self.last_ts[symbol] = ts
        self.rt.cache.push_price(symbol, bar.close, ts)
        self.ticks += 1
        self.metrics.ticks.inc()
        ticks = Ticks.model_construct(ticks=[(symbol, bar.close, bar.volume, ts, bar.open)])
        self.ask(EXECUTION, ticks, REPLAY_PRICE_TIMEOUT_S, type(None))  # answered once priced
        if not bar.event:
            return  # a bar the strategy has no signal on: priced, no decision
        pending = PendingTick(symbol, bar.close, bar.volume, ts)
        now = self.clock.now()  # read again: execution priced the bar meanwhile
        if self.offer(symbol, pending, now):
            self.dispatch(self.tick_event(pending, now), now)

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
        self.alert(_TIER_ALERT[step.tier], "feed_tier", text)
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
        self.alert(level, kind, message)

    def status(self) -> dict[str, Any]:
        out = self.admission_status()
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
