"""The role actors. Each answers with a message; the commander gathers both answers.

The commander owns each event's stage clocks: an analysis or verification that has not
arrived by its timeout fails the event at once, and a veto ends it at once. It also runs
the 3-minute commander sessions with a save every 10 s (SPEC 1.1).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.context import K_SESSION
from aegis_actors.execution.mismatch import verify_price
from aegis_actors.messages import (
    Action,
    Analysis,
    ConfirmPrice,
    Context,
    Decision,
    DecisionRecord,
    EventDone,
    Outcome,
    PriceConfirmation,
    Proposal,
    SessionSave,
    StageFailure,
    Verdict,
)
from aegis_actors.roles import rules
from aegis_actors.runtime import COMMANDER, EXECUTION, MARKET, STORE, VERIFIER, WATCHDOG
from supervisors import Timer


class _RoleBase(AegisActor):
    def on_start(self) -> None:
        self.handled = 0
        self.failed = 0

    def fail(self, ctx: Context, exc: Exception) -> None:
        self.failed += 1
        self.metrics.errors.labels(f"{self.name}_failed").inc()
        self.log.bind(event_id=ctx.event_id).error("{} failed: {}", self.name, exc)
        self.send(
            COMMANDER,
            StageFailure(
                role=self.name, event_id=ctx.event_id, reason=str(exc), ts=self.clock.now()
            ),
        )

    def status(self) -> dict[str, Any]:
        role = getattr(self.settings.roles, self.name)
        return {
            "backend": role.backend,
            "model": role.model,
            "handled": self.handled,
            "failed": self.failed,
        }


class Analyst(_RoleBase):
    def on_Context(self, ctx: Context) -> None:
        try:
            analysis = rules.analyse(ctx, self.clock.now())
        except Exception as exc:
            self.fail(ctx, exc)
            return
        self.handled += 1
        self.log.bind(event_id=ctx.event_id).debug(
            "analysis {} conf={} ({})", analysis.direction, analysis.confidence, analysis.pattern
        )
        self.send(COMMANDER, analysis)


class Verifier(_RoleBase):
    def on_Context(self, ctx: Context) -> None:
        self.check(ctx, None)

    def on_Proposal(self, p: Proposal) -> None:
        self.check(p.context, p.analysis)

    def on_ConfirmPrice(self, c: ConfirmPrice) -> None:
        """SPEC 4.3, 0.5-2 % broker/feed mismatch: confirm before execution sends on it."""
        history = self.rt.cache.prices(c.symbol, 1)
        latest = history[-1][1] if history else None
        age = self.clock.now() - history[-1][0] if history else None
        ok, why = verify_price(
            c.broker_price, c.feed_price, latest, age, self.settings.risk.mismatch_halt_pct
        )
        self.log.info("price check {}: {} ({})", c.symbol, "confirmed" if ok else "REFUSED", why)
        self.send(
            EXECUTION,
            PriceConfirmation(
                request_id=c.request_id,
                symbol=c.symbol,
                approve=ok,
                reason=why,
                ts=self.clock.now(),
            ),
        )

    def check(self, ctx: Context, analysis: Analysis | None) -> None:
        try:
            verdict = rules.verify(ctx, analysis, self.clock.now())
        except Exception as exc:
            self.fail(ctx, exc)
            return
        self.handled += 1
        self.log.bind(event_id=ctx.event_id).debug(
            "verdict {} ({})", "approve" if verdict.approve else "VETO", "; ".join(verdict.reasons)
        )
        self.send(COMMANDER, verdict)


@dataclass
class _Slot:
    ctx: Context
    analysis: Analysis | None = None
    verdict: Verdict | None = None
    timers: list[Timer] = field(default_factory=list)


@dataclass(frozen=True)
class _StageTimeout:
    event_id: str
    stage: str


@dataclass(frozen=True)
class _SaveTick:
    pass


class Commander(_RoleBase):
    def on_start(self) -> None:
        super().on_start()
        self.slots: dict[str, _Slot] = {}
        self.outcomes: dict[str, int] = {}
        self.session_id = ""
        self.session_opened = 0.0
        self.session_decisions = 0
        self.session_dirty = False
        self.sessions = 0
        self.after(self.settings.store.save_every_s, _SaveTick())

    # -- sessions (SPEC 1.1) -----------------------------------------------------------

    def ensure_session(self, now: float) -> None:
        if self.session_id and now - self.session_opened < self.settings.store.session_s:
            return
        if self.session_id:
            self.save_session(now, closed=True)
        self.session_id = "ss-" + uuid.uuid4().hex[:12]
        self.session_opened = now
        self.session_decisions = 0
        self.sessions += 1
        self.session_dirty = True
        self.rt.cache.set_json(K_SESSION, {"session_id": self.session_id, "opened_at": now})
        self.log.info("commander session {} opened", self.session_id)

    def session_state(self) -> dict[str, Any]:
        return {
            "decisions": self.session_decisions,
            "outcomes": dict(self.outcomes),
            "pending": len(self.slots),
        }

    def save_session(self, now: float, *, closed: bool = False) -> None:
        if not self.session_id:
            return
        self.send(
            STORE,
            SessionSave(
                session_id=self.session_id,
                opened_at=self.session_opened,
                state=self.session_state(),
                ts=now,
                closed_at=now if closed else None,
                full=closed,
            ),
        )
        self.session_dirty = False
        if closed:
            self.log.info(
                "commander session {} closed after {} decisions",
                self.session_id,
                self.session_decisions,
            )

    def on__SaveTick(self, _msg: _SaveTick) -> None:
        now = self.clock.now()
        if self.session_id and now - self.session_opened >= self.settings.store.session_s:
            self.save_session(now, closed=True)
            self.session_id = ""
        elif self.session_dirty:
            self.save_session(now)
        self.after(self.settings.store.save_every_s, _SaveTick())

    def stopping(self) -> None:
        self.save_session(self.clock.now(), closed=True)

    # -- one event ---------------------------------------------------------------------

    def on_Context(self, ctx: Context) -> None:
        self.ensure_session(self.clock.now())
        slot = self.slots.get(ctx.event_id)
        if slot is None:
            slot = self.slots[ctx.event_id] = _Slot(ctx)
        else:
            slot.ctx = ctx
        roles = self.settings.roles
        slot.timers.append(
            self.after(roles.analyst.timeout_s, _StageTimeout(ctx.event_id, "analysis"))
        )
        verify_budget = roles.verifier.timeout_s
        if not roles.parallel_verification:
            verify_budget += roles.analyst.timeout_s
        slot.timers.append(self.after(verify_budget, _StageTimeout(ctx.event_id, "verification")))
        self.try_decide(ctx.event_id)

    def on_Analysis(self, a: Analysis) -> None:
        slot = self.slots.get(a.event_id)
        if slot is None:
            return self.late(a.event_id, "analysis")
        slot.analysis = a
        if not self.settings.roles.parallel_verification:
            self.send(
                VERIFIER,
                Proposal(event_id=a.event_id, stamps=a.stamps, context=slot.ctx, analysis=a),
            )
        self.try_decide(a.event_id)

    def on_Verdict(self, v: Verdict) -> None:
        slot = self.slots.get(v.event_id)
        if slot is None:
            return self.late(v.event_id, "verdict")
        slot.verdict = v
        if not v.approve:
            self.finish(slot, Outcome.VETOED, "; ".join(v.reasons), stage="verification")
            return
        self.try_decide(v.event_id)

    def on_StageFailure(self, f: StageFailure) -> None:
        slot = self.slots.get(f.event_id)
        if slot is not None:
            stage = "analysis" if f.role == "analyst" else "verification"
            self.finish(slot, Outcome.FAILED, f"{f.role}: {f.reason}", stage=stage)
        self.send(WATCHDOG, f)

    def on__StageTimeout(self, t: _StageTimeout) -> None:
        slot = self.slots.get(t.event_id)
        if slot is None:
            return
        if (t.stage == "analysis" and slot.analysis is None) or (
            t.stage == "verification" and slot.verdict is None
        ):
            self.send(
                WATCHDOG,
                StageFailure(
                    role=t.stage, event_id=t.event_id, reason="timeout", ts=self.clock.now()
                ),
            )
            self.finish(slot, Outcome.TIMEOUT, f"{t.stage} past its timeout", stage=t.stage)

    def late(self, event_id: str, what: str) -> None:
        self.log.bind(event_id=event_id).debug("late {} ignored (event already ended)", what)

    def try_decide(self, event_id: str) -> None:
        slot = self.slots.get(event_id)
        if slot is None or slot.analysis is None or slot.verdict is None:
            return
        try:
            decision = rules.decide(slot.ctx, slot.analysis, slot.verdict, self.clock.now())
        except Exception as exc:
            self.log.bind(event_id=event_id).error("commander failed: {}", exc)
            self.finish(slot, Outcome.FAILED, f"commander: {exc}", stage="decision")
            return
        self.handled += 1
        self.session_decisions += 1
        self.session_dirty = True
        log = self.log.bind(event_id=event_id)
        if decision.action is Action.HOLD:
            log.debug("decision hold: {}", decision.reason)
            self.finish(slot, Outcome.HOLD, decision.reason, decision=decision)
            return
        log.info(
            "decision {} {} size={} conf={}: {}",
            decision.action,
            decision.symbol,
            decision.size_fraction,
            decision.confidence,
            decision.reason,
        )
        self.record(slot, "decided", decision)
        self.drop(slot)
        self.send(EXECUTION, decision)

    def finish(
        self,
        slot: _Slot,
        outcome: Outcome,
        detail: str,
        *,
        stage: str = "",
        decision: Decision | None = None,
    ) -> None:
        ctx = slot.ctx
        stamps = dict(ctx.stamps)
        for part in (slot.analysis, slot.verdict, decision):
            if part is not None:
                stamps.update(part.stamps)
        self.record(slot, outcome.value, decision)
        self.drop(slot)
        if outcome in (Outcome.VETOED, Outcome.TIMEOUT, Outcome.FAILED):
            self.log.bind(event_id=ctx.event_id).info("event {}: {}", outcome, detail)
        done = EventDone(
            event_id=ctx.event_id,
            stamps=stamps,
            symbol=ctx.symbol,
            outcome=outcome,
            detail=detail,
            stage=stage,
        )
        self.send(MARKET, done)
        self.send(WATCHDOG, done)

    def drop(self, slot: _Slot) -> None:
        for t in slot.timers:
            t.cancel()
        self.slots.pop(slot.ctx.event_id, None)

    def record(self, slot: _Slot, outcome: str, decision: Decision | None) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        ctx = slot.ctx
        stamps = dict(ctx.stamps)
        for part in (slot.analysis, slot.verdict, decision):
            if part is not None:
                stamps.update(part.stamps)
        self.send(
            STORE,
            DecisionRecord(
                decision_id=rules.decision_id(ctx.event_id),
                event_id=ctx.event_id,
                symbol=ctx.symbol,
                analysis=slot.analysis.model_dump(mode="json") if slot.analysis else None,
                verdict=slot.verdict.model_dump(mode="json") if slot.verdict else None,
                decision=decision.model_dump(mode="json") if decision else None,
                vetoed=slot.verdict is not None and not slot.verdict.approve,
                confidence=decision.confidence if decision else None,
                outcome=outcome,
                latency_ms=stage_ms(stamps),
                created_at=self.clock.now(),
            ),
        )

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "pending": len(self.slots),
            "outcomes": dict(self.outcomes),
            "session": self.session_id,
            "sessions": self.sessions,
        }


def stage_ms(stamps: dict[str, float]) -> dict[str, float]:
    """Stage latencies (ms) from the stamps present, named as in SPEC 5.1."""
    from aegis_actors.watchdog.sla import stage_latencies

    return {k: round(v, 3) for k, v in stage_latencies(stamps).items()}
