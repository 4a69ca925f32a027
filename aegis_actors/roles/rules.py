"""The local rules backend: deterministic stand-ins for the three LLM roles.

Simple, explainable indicators: a fast and slow moving average for direction, return
volatility for risk, and the posture's numbers for sizing. Same input, same answer,
so runs and tests are reproducible without any outside service.
"""

from __future__ import annotations

import hashlib
import statistics

from aegis_actors.messages import (
    ANALYSIS,
    DECISION,
    VERIFICATION,
    Action,
    Analysis,
    Context,
    Decision,
    Direction,
    OrderType,
    Verdict,
)

MIN_HISTORY = 10
FAST, SLOW = 5, 20
ENTRY_CONFIDENCE = 0.55
EXIT_CONFIDENCE = 0.5
MAX_RISK = 0.9


def _returns(prices: list[float]) -> list[float]:
    return [b / a - 1.0 for a, b in zip(prices, prices[1:], strict=False) if a > 0]


def volatility(prices: list[float]) -> float:
    r = _returns(prices[-SLOW - 1 :])
    return statistics.pstdev(r) if len(r) >= 2 else 0.0


def analyse(ctx: Context, now: float) -> Analysis:
    p = ctx.prices
    base = {"event_id": ctx.event_id, "stamps": ctx.stamps, "symbol": ctx.symbol}
    if len(p) < MIN_HISTORY:
        return Analysis(
            **base,
            direction=Direction.FLAT,
            expected_move_pct=0.0,
            confidence=0.0,
            pattern="insufficient_history",
            risk_score=0.5,
            rationale=f"{len(p)} prices, need {MIN_HISTORY}",
        ).stamp(ANALYSIS, now)
    fast = statistics.fmean(p[-FAST:])
    slow = statistics.fmean(p[-SLOW:])
    momentum = fast / slow - 1.0
    vol = volatility(p)
    z = abs(momentum) / (vol + 1e-9)
    confidence = min(0.95, z / (z + 1.0))
    if z < 0.5:
        direction, pattern = Direction.FLAT, "range"
    elif momentum > 0:
        direction, pattern = Direction.UP, "uptrend"
    else:
        direction, pattern = Direction.DOWN, "downtrend"
    if ctx.event.headline:
        pattern += "+event"
    return Analysis(
        **base,
        direction=direction,
        expected_move_pct=round(momentum * 100.0, 4),
        confidence=round(confidence, 4),
        pattern=pattern,
        risk_score=round(min(1.0, vol / 0.01), 4),
        rationale=f"sma{FAST}/sma{SLOW}-1={momentum:.5f}, vol={vol:.5f}, z={z:.2f}",
    ).stamp(ANALYSIS, now)


def verify(ctx: Context, analysis: Analysis | None, now: float) -> Verdict:
    """Independent risk checks on the context (and on the proposal, when given)."""
    reasons: list[str] = []
    holding = ctx.position is not None and ctx.position.qty != 0
    if ctx.stale:
        reasons.append(f"market data stale ({ctx.price_age_s:.0f}s old)")
    if len(ctx.prices) < MIN_HISTORY:
        reasons.append("not enough price history")
    if not holding:
        if not ctx.mode.allows_entries():
            reasons.append(f"mode {ctx.mode} allows no new entries")
        if ctx.open_positions >= ctx.params.max_positions:
            reasons.append(
                f"{ctx.open_positions} open positions, posture max {ctx.params.max_positions}"
            )
        risk = min(1.0, volatility(ctx.prices) / 0.01)
        if risk >= MAX_RISK:
            reasons.append(f"volatility risk {risk:.2f} >= {MAX_RISK}")
    weak = analysis is not None and analysis.direction is not Direction.FLAT
    if weak and analysis is not None and analysis.confidence < 0.2:
        reasons.append(f"analysis confidence {analysis.confidence:.2f} too low")
    return Verdict(
        event_id=ctx.event_id,
        stamps=ctx.stamps,
        symbol=ctx.symbol,
        approve=not reasons,
        reasons=reasons or ["checks passed"],
        confidence=0.9 if not reasons else 0.8,
    ).stamp(VERIFICATION, now)


def decision_id(event_id: str) -> str:
    return "dc-" + hashlib.sha256(event_id.encode()).hexdigest()[:20]


def decide(ctx: Context, analysis: Analysis, verdict: Verdict, now: float) -> Decision:
    price = ctx.prices[-1] if ctx.prices else (ctx.event.price or 0.0)
    action, size, reason = Action.HOLD, 0.0, "no signal"
    pos = ctx.position
    if pos is not None and pos.qty != 0:
        against = (pos.qty > 0 and analysis.direction is Direction.DOWN) or (
            pos.qty < 0 and analysis.direction is Direction.UP
        )
        if against and analysis.confidence >= EXIT_CONFIDENCE:
            action, size, reason = Action.CLOSE, 1.0, f"trend turned {analysis.direction}"
        else:
            reason = "holding position"
    elif verdict.approve and ctx.mode.allows_entries() and analysis.confidence >= ENTRY_CONFIDENCE:
        if analysis.direction is Direction.UP:
            action = Action.BUY
        elif analysis.direction is Direction.DOWN:
            action = Action.SELL
        if action is not Action.HOLD:
            size = round(max(0.25, min(1.0, analysis.confidence)), 4)
            reason = f"{analysis.pattern} at confidence {analysis.confidence:.2f}"
    sign = -1.0 if action is Action.SELL else 1.0
    entry = action in (Action.BUY, Action.SELL)
    return Decision(
        event_id=ctx.event_id,
        stamps={**analysis.stamps, **verdict.stamps},
        decision_id=decision_id(ctx.event_id),
        symbol=ctx.symbol,
        action=action,
        size_fraction=size,
        order_type=OrderType.LIMIT,
        limit_price=round(price, 4) if price else None,
        stop_loss=round(price * (1 + sign * ctx.params.stop_loss), 4) if entry else None,
        take_profit=round(price * (1 + sign * ctx.params.take_profit), 4) if entry else None,
        confidence=round(min(analysis.confidence, verdict.confidence), 4),
        reason=reason,
        posture=ctx.posture,
        reference_price=price,
    ).stamp(DECISION, now)
