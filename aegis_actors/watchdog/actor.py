"""The watchdog actor: where every failure tier meets and the trading mode is decided.

It holds stage latencies against the SLA, counts consecutive failed events (three force
the defensive posture, SPEC 2), heartbeats every actor, raises alerts, and owns the
automatic moves of the trading mode.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import pykka

from aegis_actors.base import AegisActor
from aegis_actors.context import K_MODE
from aegis_actors.messages import (
    DONE,
    Alert,
    AlertLevel,
    EventDone,
    Heartbeat,
    ModeChange,
    Outcome,
    Posture,
    RequestMode,
    SetPosture,
    StageFailure,
    SupervisorEvent,
    TradingMode,
)
from aegis_actors.runtime import EXECUTION, GATEWAY, MARKET, POSTURE, ROLES, STORE, WATCHDOG
from aegis_actors.watchdog.modes import ModeMachine
from aegis_actors.watchdog.sla import STAGES, StageHistograms, stage_latencies

FAILURE_STREAK = 3
NOT_BEATEN = {WATCHDOG, ROLES, GATEWAY, "root"}  # myself, and supervisors (they are watched
# by their own parents)
MODE_SUBSCRIBERS = (EXECUTION, POSTURE, MARKET, STORE)
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


@dataclass(frozen=True)
class _Beat:
    pass


@dataclass(frozen=True)
class _CheckBeat:
    seq: int


class Watchdog(AegisActor):
    def on_start(self) -> None:
        saved = self.rt.cache.get_json(K_MODE)
        self.modes = ModeMachine(TradingMode(saved) if saved else TradingMode.NORMAL)
        self.rt.cache.set_json(K_MODE, self.modes.mode.value)
        self.metrics.mode.set(self.modes.mode.rank)
        self.hist = StageHistograms()
        self.warn_streak: dict[str, int] = {s: 0 for s in STAGES}
        self.sla_breaches: dict[str, int] = {s: 0 for s in STAGES}
        self.failure_streak = 0
        self.outcomes: dict[str, int] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=100)
        self.sup_events: deque[dict[str, Any]] = deque(maxlen=100)
        self.beat_seq = 0
        self.beats: dict[str, pykka.Future[Any]] = {}
        self.hung: dict[str, int] = {}
        self.after(self.settings.watchdog.heartbeat_every_s, _Beat())

    # -- trading mode ------------------------------------------------------------------

    def on_RequestMode(self, req: RequestMode) -> dict[str, Any]:
        move = self.modes.request(req.target, operator=req.operator)
        if not move.ok:
            if req.operator:
                self.log.warning("mode {} refused: {}", req.target, move.why)
            return {"ok": False, "mode": self.modes.mode.value, "error": move.why}
        now = self.clock.now()
        change = ModeChange(
            old=move.old, new=move.new, reason=req.reason, ts=now, operator=req.operator
        )
        self.rt.cache.set_json(K_MODE, move.new.value)
        self.metrics.mode.set(move.new.rank)
        self.log.warning("trading mode {} -> {}: {}", move.old, move.new, req.reason)
        for name in MODE_SUBSCRIBERS:
            self.send(name, change)
        self.rt.emit(
            "mode", old=move.old.value, new=move.new.value, reason=req.reason, operator=req.operator
        )
        self.raise_alert(
            _MODE_ALERT[move.new],
            "mode_change",
            f"trading mode {move.old} -> {move.new}: {req.reason}",
        )
        if move.new is TradingMode.SHUTDOWN:
            self.rt.shutdown.set()
        return {"ok": True, "mode": move.new.value}

    # -- events and SLA ----------------------------------------------------------------

    def on_EventDone(self, done: EventDone) -> None:
        stamps = done.stamps if DONE in done.stamps else {**done.stamps, DONE: self.clock.now()}
        self.outcomes[done.outcome] = self.outcomes.get(done.outcome, 0) + 1
        self.metrics.events.labels(done.outcome.value).inc()
        for stage, ms in stage_latencies(stamps).items():
            self.hist.record(stage, ms)
            self.metrics.stage_ms.labels(stage).observe(ms)
            grade = STAGES[stage][2].grade(ms)
            if grade == "ok":
                self.warn_streak[stage] = 0
                continue
            self.sla_breaches[stage] += 1
            if grade == "critical":
                self.log.bind(event_id=done.event_id).error(
                    "stage {} took {:.0f} ms, past critical", stage, ms
                )
            self.warn_streak[stage] += 1
            if self.warn_streak[stage] == 2:
                self.raise_alert(
                    AlertLevel.WARNING,
                    "latency_sla",
                    f"stage {stage} over its SLA twice in a row ({ms:.0f} ms)",
                )
        if done.outcome in (Outcome.FAILED, Outcome.TIMEOUT):
            self.failure_streak += 1
            if self.failure_streak == FAILURE_STREAK:
                self.raise_alert(
                    AlertLevel.CRITICAL,
                    "consecutive_failures",
                    f"{FAILURE_STREAK} consecutive failed events; forcing defensive",
                )
                self.send(
                    POSTURE,
                    SetPosture(
                        posture=Posture.DEFENSIVE,
                        reason=(f"{FAILURE_STREAK} consecutive failed events"),
                    ),
                )
        elif done.outcome in (Outcome.ORDERED, Outcome.HOLD, Outcome.VETOED):
            self.failure_streak = 0

    def on_StageFailure(self, f: StageFailure) -> None:
        self.metrics.errors.labels(f"stage_{f.role}").inc()

    # -- alerts ------------------------------------------------------------------------

    def on_Alert(self, alert: Alert) -> None:
        self.record_alert(alert)

    def raise_alert(
        self, level: AlertLevel, kind: str, message: str, event_id: str | None = None
    ) -> Alert:
        alert = Alert(
            alert_id="al-" + uuid.uuid4().hex[:12],
            level=level,
            kind=kind,
            message=message,
            ts=self.clock.now(),
            event_id=event_id,
        )
        self.record_alert(alert)
        return alert

    def record_alert(self, alert: Alert) -> None:
        self.metrics.alerts.labels(alert.level.value).inc()
        self.alerts.append(alert.model_dump(mode="json"))
        self.log.bind(event_id=alert.event_id, alert_id=alert.alert_id).log(
            _LOG_LEVEL[alert.level], "ALERT {} {}: {}", alert.level, alert.kind, alert.message
        )
        self.send(STORE, alert)
        self.rt.emit("alert", **alert.model_dump(mode="json"))

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
        self.beats = {}
        for name in self.rt.directory.names():
            if name in NOT_BEATEN:
                continue
            ref = self.rt.directory.get(name)
            if ref is None:
                continue
            try:
                self.beats[name] = ref.ask(Heartbeat(seq=seq, ts=self.clock.now()), block=False)
            except pykka.ActorDeadError:
                continue
        self.after(self.settings.watchdog.heartbeat_timeout_s, _CheckBeat(seq))
        self.after(self.settings.watchdog.heartbeat_every_s, _Beat())

    def on__CheckBeat(self, msg: _CheckBeat) -> None:
        if msg.seq != self.beat_seq:
            return
        for name, fut in self.beats.items():
            try:
                fut.get(timeout=0)
            except pykka.Timeout:
                self.hung[name] = self.hung.get(name, 0) + 1
                self.raise_alert(
                    AlertLevel.WARNING,
                    "heartbeat",
                    f"{name} did not answer its heartbeat in "
                    f"{self.settings.watchdog.heartbeat_timeout_s}s",
                )
            except Exception:
                pass  # died meanwhile: its supervisor already knows

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.modes.mode.value,
            "latency": self.hist.summary(),
            "sla_breaches": dict(self.sla_breaches),
            "outcomes": dict(self.outcomes),
            "failure_streak": self.failure_streak,
            "alerts": list(self.alerts)[-10:],
            "supervisor_events": list(self.sup_events)[-10:],
            "hung": dict(self.hung),
        }
