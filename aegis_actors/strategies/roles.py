"""Role backends that run a strategy in the tree: the analyst reads the strategy's signal;
with the veto off the verifier approves and the commander passes the signal through.

They answer inline like the rules backend, so the roles' actors run unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aegis_actors.messages import (
    ANALYSIS,
    VERIFICATION,
    Action,
    Analysis,
    Direction,
    OrderType,
    Stamped,
    Verdict,
)
from aegis_actors.roles import rules
from aegis_actors.roles.backends import RoleTask
from aegis_actors.strategies.base import Strategy

SIGNAL_CONFIDENCE = 0.9  # above the rules commander's entry and exit thresholds


class SignalBook:
    """Each symbol's signals, computed once over its whole series, looked up by bar time."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.short = bool(getattr(strategy, "short", True))
        self.by_symbol: dict[str, dict[float, int]] = {}

    def add(self, symbol: str, times: Sequence[float], closes: Sequence[float]) -> list[int]:
        raw = list(self.strategy.signals(closes))
        if len(raw) != len(closes):
            raise ValueError(f"{len(raw)} signals for {len(closes)} bars")
        sig = [(s > 0) - (s < 0) for s in raw]  # any number: its sign
        self.by_symbol[symbol] = {t: s for t, s in zip(times, sig, strict=True) if s}
        return sig

    def signal(self, symbol: str, ts: float) -> int:
        return self.by_symbol.get(symbol, {}).get(ts, 0)


class _Inline:
    inline = True
    kind = "strategy"

    def __init__(self, name: str) -> None:
        self.model = name
        self.prompt_version = f"strategy.{name}"

    def meta(self) -> dict[str, Any]:
        return {"backend": "strategy", "model": self.model, "prompt_version": self.prompt_version}

    def close(self) -> None:
        pass


class SignalAnalyst(_Inline):
    """The analyst: the strategy's signal at this bar as a direction (flat when none)."""

    def __init__(self, book: SignalBook) -> None:
        super().__init__(book.strategy.name)
        self.book = book
        self.short = book.short

    def run(self, task: RoleTask, now: float) -> Stamped:
        ctx = task.ctx
        sig = self.book.signal(ctx.symbol, ctx.event.ts)
        held = ctx.position.qty if ctx.position is not None else 0.0
        if sig < 0 and not self.short and held <= 0:
            sig = 0  # long only: a sell signal only closes a long
        direction = {1: Direction.UP, -1: Direction.DOWN}.get(sig, Direction.FLAT)
        return Analysis(
            event_id=ctx.event_id,
            stamps=ctx.stamps,
            symbol=ctx.symbol,
            direction=direction,
            expected_move_pct=0.0,
            confidence=SIGNAL_CONFIDENCE if sig else 0.0,
            pattern=f"{self.model}:{'buy' if sig > 0 else 'sell' if sig < 0 else 'none'}",
            risk_score=0.0,
            rationale=f"{self.model} signal {sig:+d}",
            meta=self.meta(),
        ).stamp(ANALYSIS, now)


class ApproveAll(_Inline):
    """The verifier with `--veto off`: studies the strategy alone."""

    def __init__(self) -> None:
        super().__init__("veto_off")

    def run(self, task: RoleTask, now: float) -> Stamped:
        ctx = task.ctx
        return Verdict(
            event_id=ctx.event_id,
            stamps=ctx.stamps,
            symbol=ctx.symbol,
            approve=True,
            reasons=["veto off"],
            confidence=1.0,
            meta=self.meta(),
        ).stamp(VERIFICATION, now)


class PassThrough(_Inline):
    """The commander with `--veto off`: the analyst's signal unchanged, as a market order;
    the posture still sizes it. Flat, a signal enters; holding, the opposite signal
    reverses (closes and enters the other side at once, both filled at the next bar's
    open, as the established engines do) or, when `reverse` is off (a long-only strategy,
    the aegis rules), only closes."""

    def __init__(self, reverse: bool = False) -> None:
        super().__init__("pass_through")
        self.reverse = reverse

    def run(self, task: RoleTask, now: float) -> Stamped:
        ctx, analysis, verdict = task.ctx, task.analysis, task.verdict
        assert analysis is not None and verdict is not None
        held = ctx.position.qty if ctx.position is not None else 0.0
        d = analysis.direction
        side = {Direction.UP: Action.BUY, Direction.DOWN: Action.SELL}.get(d, Action.HOLD)
        action = Action.HOLD
        opposite = (held > 0 and d is Direction.DOWN) or (held < 0 and d is Direction.UP)
        if opposite:
            action = side if self.reverse else Action.CLOSE
        elif held == 0:
            action = side
        return rules.finish_decision(
            ctx,
            analysis,
            verdict,
            now,
            action=action,
            size=1.0,
            order_type=OrderType.MARKET,
            confidence=analysis.confidence,
            reason=analysis.rationale,
            meta=self.meta(),
            reverse=opposite and self.reverse,
        )
