"""The watchdog actor: where every failure tier meets and the trading mode is decided.

It holds stage latencies against the SLA, counts consecutive failed events (three force
the defensive posture, SPEC 2), heartbeats every actor and has a hung one restarted,
watches equity for money alarms, tracks accuracy (SPEC 5.3), runs the in-session routines
(SPEC 7), raises alerts (routed, de-duplicated, escalated until acked) and owns the
automatic moves of the trading mode.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pykka

from aegis_actors.alerts import AlertDesk, Delivery
from aegis_actors.base import AegisActor
from aegis_actors.context import K_ACCOUNT, K_MODE, K_POSITIONS, K_POSTURE
from aegis_actors.deadlines import Deadlines
from aegis_actors.messages import (
    DONE,
    AckAlert,
    AckReply,
    Alert,
    AlertLevel,
    DecisionRecord,
    EventDone,
    GetMode,
    GetOutcomes,
    Heartbeat,
    KvGet,
    KvPut,
    KvValue,
    ModeChange,
    ModeReply,
    Outcome,
    OutcomesReply,
    Posture,
    RequestMode,
    SetPosture,
    StageFailure,
    SupervisorEvent,
    TradingMode,
)
from aegis_actors.metrics import POSTURE_RANK
from aegis_actors.runtime import (
    GATEWAY,
    POSTURE,
    ROLES,
    STORE,
    TOPIC_MODE,
    WATCHDOG,
)
from aegis_actors.watchdog.account import AccountWatch
from aegis_actors.watchdog.accuracy import (
    DAY_S,
    AccuracyBook,
    DailyRate,
    judge_targets,
    targets_of,
)
from aegis_actors.watchdog.anomaly import ZScore
from aegis_actors.watchdog.modes import ModeMachine
from aegis_actors.watchdog.runs import (
    K_MODE_RUN,
    KV_LAST_RUN,
    run_ended_automatically,
    run_started,
    start_mode,
)
from aegis_actors.watchdog.sla import STAGES, StageHistograms, StageWatch, TurnObserver

NOT_BEATEN = {WATCHDOG, ROLES, GATEWAY, "root"}  # myself, and supervisors (they are watched
# by their own parents)
LAST_RUN_READ_S = 10.0  # the store may be replaying its spool first
_LOG_LEVEL = {
    AlertLevel.INFO: "INFO",
    AlertLevel.WARNING: "WARNING",
    AlertLevel.CRITICAL: "ERROR",
    AlertLevel.SEVERE: "CRITICAL",
}
_MODE_ALERT = {
    TradingMode.NORMAL: AlertLevel.INFO,
    TradingMode.LIMITED: AlertLevel.WARNING,
    TradingMode.SAFE: AlertLevel.CRITICAL,
    TradingMode.HALTED: AlertLevel.SEVERE,
    TradingMode.SHUTDOWN: AlertLevel.CRITICAL,
}
_NUMBER = (int, float)  # a tuple: `int | float` builds a new union at every check
_DIRECTIONS = ("up", "down", "flat")
# an enum member read off its class costs ~80 ns on 3.11: these are read per event
_FAILURES = frozenset((Outcome.FAILED, Outcome.TIMEOUT))
_SUCCESSES = frozenset((Outcome.ORDERED, Outcome.HOLD, Outcome.VETOED))
_NUMBERS = re.compile(r"[-+]?\d[\d,.]*")
EQUITY_EVERY_S = 5.0  # one equity point per 5 s: a 6.5 h session is 4,680 points
EQUITY_POINTS = 6_000
EQUITY_SHOWN = 400  # points sent in a status (evenly thinned, the last one always)


@dataclass(frozen=True)
class _Beat:
    pass


@dataclass(frozen=True)
class _CheckBeat:
    seq: int


@dataclass(frozen=True)
class _Escalate:
    alert_id: str
    step: int


@dataclass(frozen=True)
class _Account:
    pass


@dataclass(frozen=True)
class _Judge:
    """Timer: judge the calls whose horizon has passed (one sweep, not a timer per call)."""


@dataclass(frozen=True)
class _Routine:
    name: str  # latency | pnl | success | anomaly


@dataclass(frozen=True)
class _Delivered:
    channel: str
    result: str


class Watchdog(AegisActor):
    def on_start(self) -> None:
        w = self.settings.watchdog
        self.modes = ModeMachine(self.starting_mode())
        self.rt.cache.set_json(K_MODE, self.modes.mode.value)
        self.rt.cache.set_json(K_MODE_RUN, self.rt.run_id)
        self.metrics.mode.set(self.modes.mode.rank)
        self.metrics.posture.set_function(self._posture_rank)
        self.hist = StageHistograms()
        # labelled once; observed per mailbox turn (flushed in release_held)
        self.stage_obs = {s: TurnObserver(self.metrics.stage_ms.labels(s)) for s in STAGES}
        self.warn_streak: dict[str, int] = {s: 0 for s in STAGES}
        self.sla_breaches: dict[str, int] = {s: 0 for s in STAGES}
        self.failure_streak = 0
        self.outcomes: dict[str, int] = {}
        self.event_counts: dict[Outcome, Any] = {}  # outcome -> its labelled counter
        self.outcomes_unflushed: dict[Outcome, int] = {}  # counted into it once per turn
        self.alerts: deque[dict[str, Any]] = deque(maxlen=100)
        self.sup_events: deque[dict[str, Any]] = deque(maxlen=100)
        self.beat_seq = 0
        self.beats: dict[str, pykka.Future[Any]] = {}
        self.progress_seen: dict[str, int] = {}  # name -> messages handled at the last look
        self.misses: dict[str, int] = {}
        self.hung: dict[str, int] = {}
        self.desk = AlertDesk(self.settings.alerts, on_outcome=self._delivered)
        self.open: dict[str, dict[str, Any]] = {}  # alert_id -> escalation in progress
        self.account = AccountWatch(
            self.settings.broker.capital,
            minute_loss_pct=self.settings.risk.minute_loss_limit_pct,
            capital_loss_pct=w.capital_loss_halt_pct,
            daily_target_pct=w.daily_target_pct,
            target_ratio=w.daily_target_alert_ratio,
        )
        self.book = AccuracyBook(w.accuracy_days, w.accuracy_flat_band_pct)
        self.to_judge: Deadlines[tuple[str, str]] = Deadlines(w.accuracy_horizon_s)
        self.confidence: dict[str, deque[float]] = {
            r: deque(maxlen=200) for r in ("analyst", "verifier", "commander")
        }
        self.confidence_of = tuple(self.confidence.values())
        self.z_stage = {s: ZScore(w.anomaly_window, w.anomaly_min_samples) for s in STAGES}
        # per stage, what each event's latency feeds: looked up once, not per stage per event
        self.stage_watch = [
            (
                s,
                a,
                b,
                sla.warning_ms,
                StageWatch(s, sla, self.hist, self.stage_obs[s], self.z_stage[s]),
            )
            for s, (a, b, sla) in STAGES.items()
        ]
        self.z_ticks = ZScore(w.anomaly_window, w.anomaly_min_samples)
        self.last_ticks = self.metrics.value("aegis_ticks_total")
        self.execution = DailyRate(w.accuracy_days)  # orders ok over sent, rolling
        self.orders_seen = (0, 0)  # (ok, total) of the order counters already bucketed
        self.below: set[str] = set()  # SPEC 5.3 rates under target (alerted once per dip)
        self.accuracy_seen: tuple[Any, ...] = ()  # what the accuracy gauges were last set on
        self.gauges: dict[tuple[str, str], Any] = {}  # labelled once, not on every look
        self.equity_line: deque[tuple[float, float]] = deque(maxlen=EQUITY_POINTS)
        self.after(w.heartbeat_every_s, _Beat())
        self.after(w.account_every_s, _Account())
        for name, every in self.routines().items():
            self.after(every, _Routine(name))

    def starting_mode(self) -> TradingMode:
        """Within one run (an actor restart) the mode in force; in a new run `normal`, or
        `safe` after a run that ended in an automatic shutdown (watchdog/runs.py)."""
        saved = self.rt.cache.get_json(K_MODE)
        if saved and self.rt.cache.get_json(K_MODE_RUN) == self.rt.run_id:
            return TradingMode(saved)
        try:
            last = self.ask(STORE, KvGet(key=KV_LAST_RUN), LAST_RUN_READ_S, KvValue).value
        except Exception as exc:  # the store is down: nothing known, start normal
            self.log.warning("how the last run ended is unknown ({}): starting normal", exc)
            last = None
        start = start_mode(last, resume=self.rt.resume)
        now = self.clock.now()
        if start.why:
            self.log.warning("{}", start.why)
        if start.mode is not TradingMode.NORMAL:
            self.send(
                STORE,
                ModeChange(old=TradingMode.NORMAL, new=start.mode, reason=start.why, ts=now),
            )
        self.send(STORE, KvPut(key=KV_LAST_RUN, value=run_started(self.rt.run_id, now), ts=now))
        return start.mode

    def routines(self) -> dict[str, float]:
        w = self.settings.watchdog
        return {
            "latency": w.latency_log_every_s,
            "pnl": w.pnl_log_every_s,
            "success": w.success_log_every_s,
            "anomaly": w.anomaly_every_s,
        }

    def stopping(self) -> None:
        if hasattr(self, "desk"):
            self.desk.close()
        if hasattr(self, "hist"):
            self.keep_latency()

    def keep_latency(self) -> None:
        """The run's stage histograms into the ledger (kv), for close-day's report: the
        decision rows carry the early stages only, not order acceptance nor the whole cycle."""
        now = self.clock.now()
        day = datetime.fromtimestamp(now, UTC).date().isoformat()
        self.send(
            STORE,
            KvPut(key=f"latency:{day}:{self.rt.run_id}", value=self.hist.summary(), ts=now),
        )

    def _posture_rank(self) -> float:
        p = self.rt.cache.get_json(K_POSTURE) or {}
        return float(POSTURE_RANK.get(str(p.get("posture")), -1))

    # -- trading mode ------------------------------------------------------------------

    def on_RequestMode(self, req: RequestMode) -> ModeReply:
        return self.move_mode(req)

    def on_GetMode(self, _msg: GetMode) -> ModeReply:
        return ModeReply(ok=True, mode=self.modes.mode)

    def on_GetOutcomes(self, _msg: GetOutcomes) -> OutcomesReply:
        return OutcomesReply(outcomes=dict(self.outcomes))

    def move_mode(self, req: RequestMode, *, alert: bool = True) -> ModeReply:
        move = self.modes.request(req.target, operator=req.operator)
        if not move.ok:
            if req.operator:
                self.log.warning("mode {} refused: {}", req.target, move.why)
            return ModeReply(ok=False, mode=self.modes.mode, error=move.why)
        now = self.clock.now()
        self.rt.cache.set_json(K_MODE, move.new.value)
        self.metrics.mode.set(move.new.rank)
        old = move.old
        for step in move.steps or (move.new,):  # shutdown from below safe passes through safe
            change = ModeChange(old=old, new=step, reason=req.reason, ts=now, operator=req.operator)
            self.log.warning("trading mode {} -> {}: {}", old, step, req.reason)
            self.fan_out(TOPIC_MODE, change)
            self.rt.emit(
                "mode", old=old.value, new=step.value, reason=req.reason, operator=req.operator
            )
            old = step
        if alert:
            self.raise_alert(
                _MODE_ALERT[move.new],
                "mode_change",
                f"trading mode {move.old} -> {move.new}: {req.reason}",
                always=move.new.rank >= TradingMode.SAFE.rank,  # never de-duplicated
            )
        if move.new is TradingMode.SHUTDOWN:
            if not req.operator:  # the next run starts safe, and this one exits 1
                self.rt.ended_by = req.reason
                self.send(
                    STORE,
                    KvPut(
                        key=KV_LAST_RUN,
                        value=run_ended_automatically(self.rt.run_id, now, req.reason),
                        ts=now,
                    ),
                )
            self.rt.shutdown.set()
        return ModeReply(ok=True, mode=move.new)

    # -- events and SLA ----------------------------------------------------------------

    def on_EventDone(self, done: EventDone) -> None:
        stamps = done.stamps if DONE in done.stamps else {**done.stamps, DONE: self.clock.now()}
        outcome = done.outcome
        critical = ""
        warn_streak = self.warn_streak
        for stage, a, b, warning_ms, watch in self.stage_watch:  # `stage_latencies`, inlined
            ta = stamps.get(a)
            tb = stamps.get(b)
            if ta is None or tb is None:
                continue
            ms = (tb - ta) * 1000.0
            if ms < 0.0:
                ms = 0.0
            # histogram, prometheus, z-score history; scored only when slow (at or past
            # the target): fast outliers are no news
            score = watch.take(ms)
            if score is not None:
                self.anomaly(f"latency:{stage}", score, f"{ms:.0f} ms")
            if ms < warning_ms:  # graded ok: the common case, no grade string built
                warn_streak[stage] = 0
                continue
            grade = watch.sla.grade(ms)
            self.sla_breaches[stage] += 1
            if grade == "critical":
                critical = critical or stage
                self.log.bind(event_id=done.event_id).error(
                    "stage {} took {:.0f} ms, past critical: event failed", stage, ms
                )
            self.warn_streak[stage] += 1
            if self.warn_streak[stage] == 2:
                self.raise_alert(
                    AlertLevel.WARNING,
                    "latency_sla",
                    f"stage {stage} over its SLA twice in a row ({ms:.0f} ms)",
                    event_id=done.event_id,
                )
        if critical and outcome not in _FAILURES:
            outcome = Outcome.FAILED  # SPEC 2: a stage past its critical time fails the event
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        unflushed = self.outcomes_unflushed
        unflushed[outcome] = unflushed.get(outcome, 0) + 1
        if not self._held_since and not self.hold():  # the deterministic scheduler:
            self.flush_stage_metrics()  # into the metrics at once
        if outcome in _FAILURES:
            self.failure_streak += 1
            streak = self.settings.roles.max_consecutive_failures  # live: read at use
            if self.failure_streak == streak:
                self.raise_alert(
                    AlertLevel.CRITICAL,
                    "consecutive_failures",
                    f"{streak} consecutive system errors (failed events); forcing defensive",
                    event_id=done.event_id,
                )
                self.send(
                    POSTURE,
                    SetPosture(
                        posture=Posture.DEFENSIVE,
                        reason=f"{streak} consecutive failed events",
                    ),
                )
        elif outcome in _SUCCESSES:
            self.failure_streak = 0

    def release_held(self) -> None:
        self.flush_stage_metrics()  # the end of the turn: the stage latencies it observed
        super().release_held()

    def flush_stage_metrics(self) -> None:
        """What this turn's events observed, into prometheus once per turn (one locked
        increment per outcome and bucket, not one per event)."""
        for obs in self.stage_obs.values():
            obs.flush()
        if self.outcomes_unflushed:
            unflushed, self.outcomes_unflushed = self.outcomes_unflushed, {}
            for outcome, n in unflushed.items():
                counter = self.event_counts.get(outcome)
                if counter is None:
                    counter = self.event_counts[outcome] = self.metrics.events.labels(outcome.value)
                counter.inc(n)

    def on_StageFailure(self, f: StageFailure) -> None:
        self.metrics.errors.labels(f"stage_{f.role}").inc()

    # -- accuracy (SPEC 5.3) -----------------------------------------------------------

    def on_DecisionRecord(self, rec: DecisionRecord) -> None:
        a, v, d = rec.analysis, rec.verdict, rec.decision
        analyst, verifier, commander = self.confidence_of  # the roles' deques, in this order
        if a is not None and isinstance(c := a.confidence, _NUMBER):
            analyst.append(float(c))
        if v is not None and isinstance(c := v.confidence, _NUMBER):
            verifier.append(float(c))
        if d is not None and isinstance(c := d.confidence, _NUMBER):
            commander.append(float(c))
        direction = str(a.direction) if a is not None else None  # the enum's value
        price = (d.reference_price if d is not None else None) or self.last_price(rec.symbol)
        if direction not in _DIRECTIONS or not price:
            return
        self.book.call_of(
            rec.decision_id,
            rec.symbol,
            str(direction),
            rec.vetoed,
            float(price),
            rec.created_at,
        )
        delay = self.to_judge.add(self.clock.now(), (rec.decision_id, rec.symbol))
        if delay is not None:
            self.after(delay, _Judge())

    def on__Judge(self, msg: _Judge) -> None:
        now = self.clock.now()
        due, delay = self.to_judge.due(now, lambda _call: True)
        for decision_id, symbol in due:
            price = self.last_price(symbol)
            scored = self.book.judge(decision_id, price or 0.0, now)
            if scored is not None:
                self.trace(None, "judged {}: {}", decision_id, scored)
        # the gauges (and a dip's alert) follow at the next account look (account_every_s)
        if delay is not None:
            self.after(delay, msg)

    def last_price(self, symbol: str) -> float | None:
        prices = self.rt.cache.prices(symbol, 1)
        return prices[-1][1] if prices else None

    def accuracy(self, success: tuple[float | None, int] | None = None) -> dict[str, Any]:
        now = self.clock.now()
        out = self.book.summary(now)
        rate, n = success or self.metrics.order_success()
        ok_total = round((rate or 0.0) * n)
        new_ok, new_n = ok_total - self.orders_seen[0], n - self.orders_seen[1]
        if new_n > 0:  # the counters' growth since the last look, into today's bucket
            self.execution.add_many(now, new_ok, new_n)
            self.orders_seen = (ok_total, n)
        out["execution_success"], out["orders_judged"] = self.execution.rate(now)
        w = self.settings.watchdog
        rates = {
            "analysis": (out["analysis_accuracy"], out["analysis_judged"]),
            "veto": (out["veto_hit_rate"], out["vetoes_judged"]),
            "execution": (out["execution_success"], out["orders_judged"]),
        }
        out["targets"] = [
            t.__dict__ for t in judge_targets(rates, targets_of(w), w.accuracy_min_samples)
        ]
        return out

    def update_accuracy_metrics(self) -> None:
        """Set the SPEC 5.3 gauges (an alert on a dip); called on every account look, so
        it returns at once when nothing it reads has moved since (the same figures)."""
        success = self.metrics.order_success()
        seen = (self.clock.now() // DAY_S, self.book.moved(), success[1])
        if seen == self.accuracy_seen:
            return
        self.accuracy_seen = seen
        acc = self.accuracy(success)
        for kind, key in (
            ("analysis", "analysis_accuracy"),
            ("veto", "veto_hit_rate"),
            ("execution", "execution_success"),
        ):
            if acc[key] is not None:
                self.gauge("accuracy", kind).set(acc[key])
        for t in acc["targets"]:
            kind = t["kind"]
            self.gauge("accuracy_target", kind).set(t["target"])
            below = t["status"] == "below"
            self.gauge("accuracy_below", kind).set(1.0 if below else 0.0)
            if below and kind not in self.below:
                self.below.add(kind)
                self.raise_alert(
                    AlertLevel.WARNING,
                    "accuracy_target",
                    f"{t['label']} {t['value'] * 100:.1f}% is below its "
                    f"{t['target'] * 100:g}% target (SPEC 5.3) over {t['samples']} samples",
                )
            elif not below and kind in self.below and t["status"] == "met":
                self.below.discard(kind)
                self.log.info("{} back at or above its target", t["label"])

    def gauge(self, name: str, kind: str) -> Any:
        """`metrics.<name>.labels(kind)`, looked up once."""
        g = self.gauges.get((name, kind))
        if g is None:
            g = self.gauges[name, kind] = getattr(self.metrics, name).labels(kind)
        return g

    # -- money -------------------------------------------------------------------------

    def on__Account(self, _msg: _Account) -> None:
        self.after(self.settings.watchdog.account_every_s, _Account())
        self.update_accuracy_metrics()  # execution success moves with every order
        acct = self.rt.cache.get_json(K_ACCOUNT)
        if not isinstance(acct, dict) or not isinstance(acct.get("equity"), int | float):
            return
        now = self.clock.now()
        if not self.equity_line or now - self.equity_line[-1][0] >= EQUITY_EVERY_S:
            self.equity_line.append((now, float(acct["equity"])))  # the dashboard's line
        for t in self.account.observe(float(acct["equity"]), self.clock.now()):
            self.raise_alert(t.level, t.kind, t.message)

    # -- in-session routines (SPEC 7) --------------------------------------------------

    def on__Routine(self, msg: _Routine) -> None:
        self.after(self.routines()[msg.name], msg)
        log = self.log.bind(routine=msg.name)
        if msg.name == "latency":
            parts = [
                f"{s} n={v['count']} p50={v['p50_ms']:.0f} p95={v['p95_ms']:.0f} "
                f"p99={v['p99_ms']:.0f}"
                for s, v in self.hist.summary().items()
                if v["count"]
            ]
            log.info("latency summary (ms): {}", "; ".join(parts) or "no events yet")
            self.keep_latency()
        elif msg.name == "pnl":
            acct = self.rt.cache.get_json(K_ACCOUNT) or {}
            positions = self.rt.cache.get_json(K_POSITIONS) or {}
            equity = acct.get("equity")
            pnl = None if equity is None else equity - self.settings.broker.capital
            log.info(
                "PnL: equity {} pnl {} realised {} open positions {}",
                equity,
                None if pnl is None else round(pnl, 2),
                acct.get("realised"),
                len(positions),
            )
        elif msg.name == "success":
            self.update_accuracy_metrics()
            log.info("success rates: outcomes {} accuracy {}", self.outcomes, self.accuracy())
        else:
            ticks = self.metrics.value("aegis_ticks_total")
            rate = (ticks - self.last_ticks) / self.settings.watchdog.anomaly_every_s
            self.last_ticks = ticks
            self.anomaly("tick_rate", self.z_ticks.observe(rate), f"{rate:.1f} ticks/s")

    def anomaly(self, series: str, score: float | None, shown: str) -> None:
        if score is None or abs(score) < self.settings.watchdog.anomaly_z:
            return
        self.metrics.anomalies.labels(series).inc()
        self.raise_alert(
            AlertLevel.WARNING, "anomaly", f"{series} at {shown} is {score:+.1f} sd off its norm"
        )

    # -- alerts ------------------------------------------------------------------------

    def on_Alert(self, alert: Alert) -> None:
        self.record_alert(alert)

    def raise_alert(
        self,
        level: AlertLevel,
        kind: str,
        message: str,
        event_id: str | None = None,
        *,
        always: bool = False,
    ) -> Alert:
        alert = Alert.new(level, kind, message, self.clock.now(), event_id)
        self.record_alert(alert, always=always)
        return alert

    def record_alert(self, alert: Alert, *, always: bool = False) -> None:
        """Log, store, broadcast, deliver and (from `escalate_from` up) escalate; a repeat
        of the same condition within the de-duplication window is only counted."""
        log = self.log.bind(event_id=alert.event_id, alert_id=alert.alert_id)
        dedup = alert.model_copy(update={"message": _NUMBERS.sub("#", alert.message)})
        repeats = self.desk.admit(dedup, always)
        if repeats is None:
            self.metrics.alerts_suppressed.labels(alert.level.value).inc()
            log.debug("repeat alert suppressed {} {}: {}", alert.level, alert.kind, alert.message)
        else:
            self.metrics.alerts.labels(alert.level.value).inc()
            entry = alert.model_dump(mode="json")
            entry["acked"] = False
            self.alerts.append(entry)
            log.log(
                _LOG_LEVEL[alert.level],
                "ALERT {} {}: {}",
                alert.level,
                alert.kind,
                alert.message,
            )
            self.send(STORE, alert)
            self.rt.emit("alert", **alert.model_dump(mode="json"))
            self.desk.notify(alert, 0, repeats)
            if self.desk.escalates(alert.level):
                self.open[alert.alert_id] = {"alert": alert, "step": 0, "since": alert.ts}
                self.schedule_escalation(alert.alert_id, 0)
        if alert.level is AlertLevel.SEVERE and self.modes.mode.rank < TradingMode.HALTED.rank:
            self.move_mode(
                RequestMode(target=TradingMode.HALTED, reason=f"severe alert {alert.kind}"),
                alert=False,
            )

    def schedule_escalation(self, alert_id: str, step: int) -> None:
        delay = self.desk.next_delay(step)
        if delay is not None:
            self.open[alert_id]["timer"] = self.after(delay, _Escalate(alert_id, step + 1))

    def on__Escalate(self, msg: _Escalate) -> None:
        esc = self.open.get(msg.alert_id)
        if esc is None or esc["step"] >= msg.step:
            return  # acked meanwhile, or a stale timer
        esc["step"] = msg.step
        alert: Alert = esc["alert"]
        sent = self.desk.notify(alert, msg.step)
        tier = ["", "2nd", "3rd", "everyone"][min(msg.step, 3)]
        self.log.bind(alert_id=alert.alert_id).warning(
            "alert {} not acked after {:.0f}s: escalated to {} ({} deliveries)",
            alert.alert_id,
            self.clock.now() - esc["since"],
            tier,
            len(sent),
        )
        self.rt.emit("escalation", alert_id=alert.alert_id, step=msg.step, tier=tier)
        self.schedule_escalation(alert.alert_id, msg.step)

    def on_AckAlert(self, ack: AckAlert) -> AckReply:
        esc = self.open.pop(ack.alert_id, None)
        known = esc is not None or any(a["alert_id"] == ack.alert_id for a in self.alerts)
        if not known:
            return AckReply(ok=False, alert_id=ack.alert_id, error=f"no alert {ack.alert_id}")
        for a in self.alerts:
            if a["alert_id"] == ack.alert_id:
                a["acked"] = True
        step = 0
        if esc is not None:
            step = esc["step"]
            if esc.get("timer") is not None:
                esc["timer"].cancel()
        self.log.bind(alert_id=ack.alert_id).info(
            "alert {} acknowledged by {} (escalation step {})", ack.alert_id, ack.by, step
        )
        self.rt.emit("ack", alert_id=ack.alert_id, by=ack.by, step=step)
        self.send(STORE, ack.model_copy(update={"ts": self.clock.now()}))
        return AckReply(ok=True, alert_id=ack.alert_id, escalation_step=step)

    def _delivered(self, d: Delivery, result: str, _attempts: int) -> None:
        """Courier thread: metrics only (thread-safe), no actor state."""
        self.metrics.alert_deliveries.labels(d.channel, result).inc()

    # -- supervision and heartbeats ----------------------------------------------------

    def on_SupervisorEvent(self, ev: SupervisorEvent) -> None:
        data = ev.data
        self.sup_events.append(data)
        self.rt.emit(
            "supervisor",
            **{k: v for k, v in data.items() if k not in ("type", "ts")},
            kind=data.get("type"),
        )
        kind = str(data.get("type", ""))
        if kind.endswith("restart"):
            self.metrics.restarts.labels(str(data.get("child", "?"))).inc()
        if kind.endswith("escalation") or kind.endswith("abandoned"):
            self.raise_alert(AlertLevel.CRITICAL, kind, f"{data}")

    def on__Beat(self, _msg: _Beat) -> None:
        self.beat_seq += 1
        seq = self.beat_seq
        for name in self.rt.directory.names():
            if name in NOT_BEATEN or name in self.beats:
                continue  # a beat still unanswered stays the one we judge
            ref = self.rt.directory.get(name)
            if ref is None:
                continue
            try:
                self.beats[name] = ref.ask(Heartbeat(seq=seq, ts=self.clock.now()), block=False)
            except pykka.ActorDeadError:
                continue
            self.progress_seen[name] = self.handled(name)
        self.after(self.settings.watchdog.heartbeat_timeout_s, _CheckBeat(seq))
        self.after(self.settings.watchdog.heartbeat_every_s, _Beat())

    def on__CheckBeat(self, msg: _CheckBeat) -> None:
        if msg.seq != self.beat_seq:
            return
        for name, fut in list(self.beats.items()):
            try:
                fut.get(timeout=0)
            except pykka.Timeout:
                done = self.handled(name)
                if done != self.progress_seen.get(name, done):
                    # late but working through its mailbox: busy, not hung (backpressure
                    # is the gateway's job; a restart would lose the queue and help nothing)
                    self.progress_seen[name] = done
                    self.misses.pop(name, None)
                    self.metrics.heartbeat_busy.labels(name).inc()
                    continue
                if name in self.rt.waiting_on:
                    # blocked in a bounded ask to another actor: that one is judged, not this
                    self.misses.pop(name, None)
                    self.metrics.heartbeat_busy.labels(name).inc()
                    continue
                self.missed(name)
                continue
            except Exception:
                pass  # died meanwhile: its supervisor already knows
            del self.beats[name]
            self.misses.pop(name, None)

    def handled(self, name: str) -> int:
        counter = self.rt.progress.get(name)
        return counter[0] if counter else 0

    def missed(self, name: str) -> None:
        w = self.settings.watchdog
        n = self.misses[name] = self.misses.get(name, 0) + 1
        self.metrics.heartbeat_misses.labels(name).inc()
        if n < w.heartbeat_misses:
            self.log.warning("{} missed a heartbeat ({}/{})", name, n, w.heartbeat_misses)
            return
        self.hung[name] = self.hung.get(name, 0) + 1
        self.misses.pop(name, None)
        self.beats.pop(name, None)
        parent = self.rt.directory.parent(name) or "root"
        self.raise_alert(
            AlertLevel.WARNING,
            "heartbeat",
            f"{name} missed {n} heartbeats ({w.heartbeat_timeout_s}s each): hung; "
            f"asking {parent} to restart it",
        )
        ref = self.rt.directory.get(parent)
        if ref is None:
            self.log.error("cannot restart hung {}: supervisor {} not running", name, parent)
            return
        ref.proxy().restart_child(name)  # a future: the supervisor reports the restart

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.modes.mode.value,
            "latency": self.hist.summary(),
            "sla": {
                s: {
                    "target_ms": v.target_ms,
                    "warning_ms": v.warning_ms,
                    "critical_ms": v.critical_ms,
                }
                for s, (_a, _b, v) in STAGES.items()
            },
            "sla_breaches": dict(self.sla_breaches),
            "outcomes": dict(self.outcomes),
            "failure_streak": self.failure_streak,
            "accuracy": self.accuracy(),
            "confidence": {
                r: {
                    "last": q[-1] if q else None,
                    "mean": round(sum(q) / len(q), 3) if q else None,
                    "n": len(q),
                }
                for r, q in self.confidence.items()
            },
            "account": {k: round(v, 3) for k, v in self.account.last.items()},
            "equity_line": thinned(list(self.equity_line), EQUITY_SHOWN),
            "alerts": list(self.alerts)[-20:],
            "escalating": [
                {
                    "alert_id": k,
                    "step": v["step"],
                    "level": v["alert"].level.value,
                    "kind": v["alert"].kind,
                }
                for k, v in self.open.items()
            ],
            "delivery": self.desk.status(),
            "supervisor_events": list(self.sup_events)[-10:],
            "hung": dict(self.hung),
        }


def thinned(points: list[tuple[float, float]], most: int) -> list[list[float]]:
    """At most `most` points, evenly spaced, always ending on the latest."""
    step = max(1, -(-len(points) // most))
    kept = points[::step]
    if points and kept[-1] != points[-1]:
        kept.append(points[-1])
    return [[round(ts, 3), round(eq, 2)] for ts, eq in kept]
