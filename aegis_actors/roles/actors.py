"""The role actors. Each answers with a message; the commander gathers both answers.

The commander owns each event's stage clocks: an analysis or verification that has not
arrived by its timeout fails the event at once, and a veto ends it at once. It also runs
the 3-minute commander sessions with a save every 10 s (SPEC 1.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.deadlines import Deadlines
from aegis_actors.execution.mismatch import verify_price
from aegis_actors.logs import tracing
from aegis_actors.messages import (
    DONE,
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
    StageFailure,
    Stamped,
    Verdict,
)
from aegis_actors.roles import rules
from aegis_actors.roles.backends import RoleTask, make_backend
from aegis_actors.roles.calls import RoleCalls, _Budget, _Reply, _Retry, _Slow, _TierCheck
from aegis_actors.roles.capacity import pool_workers
from aegis_actors.runtime import (
    COMMANDER,
    EXECUTION,
    MARKET,
    TOPIC_DECISIONS,
    VERIFIER,
    WATCHDOG,
)
from aegis_actors.sessions import CommanderSession
from aegis_actors.watchdog.sla import STAGES


class _RoleBase(AegisActor):
    """A role: its backend (rules or LLM) runs through `RoleCalls`, answers come back as
    messages, so the mailbox is never blocked on HTTP."""

    def on_start(self) -> None:
        self.handled = 0
        self.failed = 0
        cfg = getattr(self.settings.roles, self.name)
        workers = pool_workers(cfg, self.settings.roles)
        self.backend = self.rt.role_backends.get(self.name) or make_backend(self.name, cfg, workers)
        self.calls = RoleCalls(self, self.name, self.backend, self.role_answered, self.role_failed)

    def on_stop(self) -> None:
        self.calls.close()
        super().on_stop()

    def on_failure(self, *exc: object) -> None:
        self.calls.close()
        super().on_failure(*exc)

    # private messages of RoleCalls: worker outcomes and clock timers
    def on__Reply(self, msg: _Reply) -> None:
        self.calls.on_reply(msg)

    def on__Slow(self, msg: _Slow) -> None:
        self.calls.on_slow(msg)

    def on__Retry(self, msg: _Retry) -> None:
        self.calls.on_retry(msg)

    def on__Budget(self, msg: _Budget) -> None:
        self.calls.on_budget(msg)

    def on__TierCheck(self, msg: _TierCheck) -> None:
        self.calls.on_tier(msg)

    def role_answered(self, task: RoleTask, msg: Stamped) -> None:
        self.handled += 1
        self.send(COMMANDER, msg)

    def role_failed(self, task: RoleTask, reason: str, timed_out: bool) -> None:
        ctx = task.ctx
        self.failed += 1
        self.metrics.errors.labels(f"{self.name}_failed").inc()
        self.log.bind(event_id=ctx.event_id).error("{} failed: {}", self.name, reason)
        self.send(
            COMMANDER,
            StageFailure(
                role=self.name,
                event_id=ctx.event_id,
                reason=("timeout: " if timed_out else "") + reason,
                ts=self.clock.now(),
            ),
        )

    def status(self) -> dict[str, Any]:
        role = getattr(self.settings.roles, self.name)
        return {
            "backend": role.backend,
            "model": role.model,
            "handled": self.handled,
            "failed": self.failed,
            **self.calls.status(),
        }


class Analyst(_RoleBase):
    def on_Context(self, ctx: Context) -> None:
        self.calls.start(RoleTask(ctx))

    def role_answered(self, task: RoleTask, msg: Stamped) -> None:
        if tracing() and isinstance(msg, Analysis):
            self.trace(
                msg.event_id,
                "analysis {} conf={} ({})",
                msg.direction,
                msg.confidence,
                msg.pattern,
            )
        super().role_answered(task, msg)


class Verifier(_RoleBase):
    def on_Context(self, ctx: Context) -> None:
        self.calls.start(RoleTask(ctx))

    def on_Proposal(self, p: Proposal) -> None:
        self.calls.start(RoleTask(p.context, p.analysis))

    def role_answered(self, task: RoleTask, msg: Stamped) -> None:
        if tracing() and isinstance(msg, Verdict):
            self.trace(
                msg.event_id,
                "verdict {} ({})",
                "approve" if msg.approve else "VETO",
                "; ".join(msg.reasons),
            )
        super().role_answered(task, msg)

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


@dataclass
class _Slot:
    ctx: Context
    analysis: Analysis | None = None
    verdict: Verdict | None = None
    deciding: bool = False

    def stamps(self, decision: Decision | None = None) -> dict[str, float]:
        """Every stage's stamp so far, from the context and each answer that came back."""
        out = dict(self.ctx.stamps)
        for part in (self.analysis, self.verdict, decision):
            if part is not None:
                out.update(part.stamps)
        return out


@dataclass(frozen=True)
class _StageTimeout:
    event_id: str
    stage: str


@dataclass(frozen=True)
class _SweepStage:
    """Timer: sweep one stage's deadlines (one timer per stage, not one per event)."""

    stage: str


@dataclass(frozen=True)
class _SaveTick:
    pass


# read once (an Enum member off its class costs ~130 ns on Python 3.11)
_HOLD = Action.HOLD
_OUT_HOLD, _OUT_VETOED = Outcome.HOLD, Outcome.VETOED
_OUT_TIMEOUT, _OUT_FAILED = Outcome.TIMEOUT, Outcome.FAILED


class Commander(_RoleBase):
    def on_start(self) -> None:
        super().on_start()
        self.slots: dict[str, _Slot] = {}
        roles = self.settings.roles
        verify_budget = roles.verifier.timeout_s
        if not roles.parallel_verification:
            verify_budget += roles.analyst.timeout_s
        self.stage_deadlines: dict[str, Deadlines[str]] = {
            "analysis": Deadlines(roles.analyst.timeout_s),
            "verification": Deadlines(verify_budget),
        }
        self.outcomes: dict[str, int] = {}
        self.parallel = roles.parallel_verification  # read per event
        self.session = CommanderSession(self, self.session_state)
        self.session.resume(self.clock.now())
        self.after(self.settings.store.save_every_s, _SaveTick())

    # -- sessions (SPEC 1.1; the logic lives in aegis_actors.sessions) ----------------

    def session_state(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes), "pending": len(self.slots)}

    def on__SaveTick(self, _msg: _SaveTick) -> None:
        self.session.tick(self.clock.now())
        self.after(self.settings.store.save_every_s, _SaveTick())

    def stopping(self) -> None:
        if hasattr(self, "session"):
            self.session.stop(self.clock.now())

    # -- one event ---------------------------------------------------------------------

    def on_Context(self, ctx: Context) -> None:
        now = self.clock.now()
        self.session.ensure(now)
        event_id = ctx.event_id
        slot = self.slots.get(event_id)
        if slot is None:
            slot = self.slots[event_id] = _Slot(ctx)
        else:
            slot.ctx = ctx
        for stage, deadlines in self.stage_deadlines.items():
            delay = deadlines.add(now, event_id)
            if delay is not None:
                self.after(delay, _SweepStage(stage))
        self.try_decide(slot)

    def on__SweepStage(self, msg: _SweepStage) -> None:
        deadlines = self.stage_deadlines[msg.stage]
        late, delay = deadlines.due(self.clock.now(), lambda eid: self.waits(eid, msg.stage))
        for event_id in late:
            self.on__StageTimeout(_StageTimeout(event_id, msg.stage))
        if delay is not None:
            self.after(delay, msg)

    def waits(self, event_id: str, stage: str) -> bool:
        """The event is still waiting for that stage's answer."""
        slot = self.slots.get(event_id)
        if slot is None:
            return False
        return (slot.analysis if stage == "analysis" else slot.verdict) is None

    def on_Analysis(self, a: Analysis) -> None:
        slot = self.slots.get(a.event_id)
        if slot is None:
            return self.late(a.event_id, "analysis")
        slot.analysis = a
        if not self.parallel:
            self.send(
                VERIFIER,
                Proposal(event_id=a.event_id, stamps=a.stamps, context=slot.ctx, analysis=a),
            )
        self.try_decide(slot)

    def on_Verdict(self, v: Verdict) -> None:
        slot = self.slots.get(v.event_id)
        if slot is None:
            return self.late(v.event_id, "verdict")
        slot.verdict = v
        if not v.approve:
            self.finish(slot, _OUT_VETOED, "; ".join(v.reasons), stage="verification")
            return
        self.try_decide(slot)

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
        self.trace(event_id, "late {} ignored (event already ended)", what)

    def try_decide(self, slot: _Slot) -> None:
        """Ask for the decision once both answers are in (the slot is still open)."""
        if slot.analysis is None or slot.verdict is None or slot.deciding:
            return
        slot.deciding = True
        self.calls.start(RoleTask(slot.ctx, slot.analysis, slot.verdict))

    def role_failed(self, task: RoleTask, reason: str, timed_out: bool) -> None:
        event_id = task.event_id
        self.failed += 1
        self.metrics.errors.labels("commander_failed").inc()
        self.log.bind(event_id=event_id).error("commander failed: {}", reason)
        self.send(
            WATCHDOG,
            StageFailure(role=self.name, event_id=event_id, reason=reason, ts=self.clock.now()),
        )
        slot = self.slots.get(event_id)
        if slot is not None:
            outcome = Outcome.TIMEOUT if timed_out else Outcome.FAILED
            self.finish(slot, outcome, f"commander: {reason}", stage="decision")

    def role_answered(self, task: RoleTask, msg: Stamped) -> None:
        slot = self.slots.get(task.event_id)
        if slot is None or not isinstance(msg, Decision):
            return self.late(task.event_id, "decision")
        decision = msg
        event_id = task.event_id
        self.handled += 1
        self.session.decided()
        if decision.action is _HOLD:
            if tracing():
                self.trace(event_id, "decision hold: {}", decision.reason)
            self.finish(slot, _OUT_HOLD, decision.reason, decision=decision)
            return
        if tracing():
            self.trace(  # the order execution makes of it is the INFO line
                event_id,
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
        stamps = slot.stamps(decision)
        now = self.clock.now()
        self.record(slot, str(outcome), decision, stamps, now)
        self.drop(slot)
        if outcome is _OUT_TIMEOUT or outcome is _OUT_FAILED:
            self.log.bind(event_id=ctx.event_id).warning("event {}: {}", outcome, detail)
        elif outcome is _OUT_VETOED:
            self.trace(ctx.event_id, "event vetoed: {}", detail)
        # the event ends here, as execution stamps an order's end: the gateway need not
        # copy the message to add it (the record's latencies above are without it)
        stamps[DONE] = now
        done = EventDone.trusted(
            event_id=ctx.event_id,
            stamps=stamps,
            symbol=ctx.symbol,
            outcome=outcome,
            detail=detail,
            stage=stage,
        )
        self.send(MARKET, done)  # the gateway frees the symbol and tells the watchdog

    def drop(self, slot: _Slot) -> None:
        self.slots.pop(slot.ctx.event_id, None)

    def record(
        self,
        slot: _Slot,
        outcome: str,
        decision: Decision | None,
        stamps: dict[str, float] | None = None,
        now: float | None = None,
    ) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        ctx = slot.ctx
        analysis, verdict = slot.analysis, slot.verdict
        rec = DecisionRecord.trusted(  # values built here: no validation pass
            decision_id=decision.decision_id if decision else rules.decision_id(ctx.event_id),
            event_id=ctx.event_id,
            symbol=ctx.symbol,
            analysis=analysis,  # the answers themselves: the store writes their JSON text
            verdict=verdict,
            decision=decision,
            vetoed=verdict is not None and not verdict.approve,
            confidence=decision.confidence if decision else None,
            outcome=outcome,
            latency_ms=stage_ms(slot.stamps(decision) if stamps is None else stamps),
            created_at=self.clock.now() if now is None else now,
            **provenance(analysis, verdict, decision),
        )
        self.fan_out(TOPIC_DECISIONS, rec)  # the ledger and the watchdog (tree.py)

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "pending": len(self.slots),
            "outcomes": dict(self.outcomes),
            "session": self.session.id,
            "sessions": self.session.count,
        }


def provenance(
    analysis: Analysis | None, verdict: Verdict | None, decision: Decision | None
) -> dict[str, Any]:
    """Per role: prompt version, model, tokens, and the event's total estimated cost."""
    versions: dict[str, str] = {}
    models: dict[str, str] = {}
    tokens: dict[str, dict[str, int]] = {}
    cost = 0.0
    for role, part in (("analyst", analysis), ("verifier", verdict), ("commander", decision)):
        if part is None:
            continue
        m = part.meta
        if not m:
            continue
        versions[role] = str(m.get("prompt_version", ""))
        models[role] = str(m.get("model", ""))
        if "tokens_in" in m:
            tokens[role] = {"input": int(m["tokens_in"]), "output": int(m["tokens_out"])}
            cost += float(m.get("cost_usd", 0.0))
    return {
        "prompt_versions": versions,
        "models": models,
        "tokens": tokens,
        "cost_usd": round(cost, 6) if cost else 0.0,  # never -0.0: a sum from 0.0
        "analysis_confidence": analysis.confidence if analysis else None,
        "verdict_confidence": verdict.confidence if verdict else None,
    }


# (stage, from stamp, to stamp), as in STAGES
_STAGE_STAMPS = tuple((stage, a, b) for stage, (a, b, _sla) in STAGES.items())


def stage_ms(stamps: dict[str, float]) -> dict[str, float]:
    """Stage latencies (ms) from the stamps present, named as in SPEC 5.1: the watchdog's
    `stage_latencies`, rounded, in one pass."""
    out = {}
    for stage, a, b in _STAGE_STAMPS:
        if a in stamps and b in stamps:
            ms = (stamps[b] - stamps[a]) * 1000.0
            out[stage] = round(ms if ms > 0.0 else 0.0, 3)  # max(0.0, ms), NaN as 0.0 too
    return out
