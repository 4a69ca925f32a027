"""Role backends behind one interface: the local rules, or an LLM over HTTP.

`RulesBackend.run` answers inline (it is pure and takes microseconds). `LlmBackend`
builds the prompt and turns a validated JSON answer into the role's message; the HTTP
itself is run by `RoleCalls` on a worker pool, never in the actor's mailbox.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from aegis_actors.llm.client import Endpoint, make_client
from aegis_actors.llm.failover import EndpointPool
from aegis_actors.llm.keys import api_key
from aegis_actors.messages import (
    ANALYSIS,
    VERIFICATION,
    Action,
    Analysis,
    Context,
    Direction,
    OrderType,
    Stamped,
    Verdict,
)
from aegis_actors.roles import prompts, rules
from aegis_actors.roles.schemas import (
    SCHEMAS,
    AnalysisAnswer,
    Answer,
    DecisionAnswer,
    VerdictAnswer,
)
from aegis_actors.settings import RoleSettings

ROLES = ("analyst", "verifier", "commander")


class RoleTask(NamedTuple):
    """What a role is asked about: the context, plus the earlier answers it builds on.
    (A named tuple: made three times per event, at half a frozen dataclass's cost.)"""

    ctx: Context
    analysis: Analysis | None = None
    verdict: Verdict | None = None

    @property
    def event_id(self) -> str:
        return self.ctx.event_id


def _analyse(task: RoleTask, now: float) -> Stamped:
    return rules.analyse(task.ctx, now)


def _verify(task: RoleTask, now: float) -> Stamped:
    return rules.verify(task.ctx, task.analysis, now)


def _decide(task: RoleTask, now: float) -> Stamped:
    assert task.analysis is not None and task.verdict is not None
    return rules.decide(task.ctx, task.analysis, task.verdict, now)


_RULES = {"analyst": _analyse, "verifier": _verify, "commander": _decide}


class RulesBackend:
    inline = True
    kind = "rules"
    model = "rules"
    prompt_version = rules.VERSION

    def __init__(self, role: str) -> None:
        self.role = role
        self.answer = _RULES.get(role, _decide)  # the role's rules, chosen once

    def run(self, task: RoleTask, now: float) -> Stamped:
        return self.answer(task, now)

    def close(self) -> None:
        pass


class LlmBackend:
    inline = False
    kind = "llm"

    def __init__(self, role: str, cfg: RoleSettings, workers: int = 32) -> None:
        if not cfg.url:
            raise ValueError(f"roles.{role}.url is empty: the llm backend needs an endpoint")
        self.role = role
        self.cfg = cfg
        self.model = cfg.model
        self.template = prompts.latest(role)
        self.prompt_version = self.template.version
        self.schema: type[Answer] = SCHEMAS[role]
        key = api_key(cfg.api_key, cfg.api)

        def client(url: str, name: str) -> Any:
            ep = Endpoint(url=url, api=cfg.api, model=cfg.model, key=key, name=name)
            return make_client(
                ep, max_tokens=cfg.max_tokens, temperature=cfg.temperature, pool_size=workers
            )

        backup = client(cfg.backup_url, "backup") if cfg.backup_url else None
        self.pool = EndpointPool(client(cfg.url, "primary"), backup, cfg.retry_primary_s)

    def prompt(self, task: RoleTask) -> tuple[str, str]:
        return self.template.fill(prompts.values(task.ctx, task.analysis, task.verdict))

    def to_message(
        self, task: RoleTask, answer: Answer, meta: dict[str, Any], now: float
    ) -> Stamped:
        ctx = task.ctx
        base = {"event_id": ctx.event_id, "stamps": ctx.stamps, "symbol": ctx.symbol, "meta": meta}
        if isinstance(answer, AnalysisAnswer):
            return Analysis(
                **base,
                direction=Direction(answer.direction),
                expected_move_pct=answer.expected_move_pct,
                confidence=answer.confidence,
                pattern=answer.pattern,
                risk_score=answer.risk_score,
                rationale=answer.rationale,
            ).stamp(ANALYSIS, now)
        if isinstance(answer, VerdictAnswer):
            return Verdict(
                **base,
                approve=answer.verdict == "approve",
                reasons=answer.reasons,
                confidence=answer.confidence,
            ).stamp(VERIFICATION, now)
        assert isinstance(answer, DecisionAnswer)
        assert task.analysis is not None and task.verdict is not None
        action = Action(answer.action)
        holding = ctx.position is not None and ctx.position.qty != 0
        if action is Action.CLOSE and not holding:
            action = Action.HOLD
        return rules.finish_decision(
            ctx,
            task.analysis,
            task.verdict,
            now,
            action=action,
            size=1.0 if action is Action.CLOSE else answer.size_fraction,
            order_type=OrderType(answer.order_type),
            confidence=answer.confidence,
            reason=answer.reason,
            meta=meta,
            limit_price=answer.limit_price,
            stop_loss=answer.stop_loss,
            take_profit=answer.take_profit,
        )

    def close(self) -> None:
        self.pool.close()


Backend = RulesBackend | LlmBackend


def make_backend(role: str, cfg: RoleSettings, workers: int = 32) -> Backend:
    """`workers`: the HTTP pool's size, so each gets a kept-alive connection."""
    return LlmBackend(role, cfg, workers) if cfg.backend == "llm" else RulesBackend(role)
