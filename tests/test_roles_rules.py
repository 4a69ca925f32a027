"""The rules backend: indicators, the verifier's checks, sizing by posture, prompts."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from aegis_actors.messages import (
    Action,
    Context,
    Direction,
    MarketEvent,
    OrderType,
    PositionView,
    Posture,
    PostureParams,
    TradingMode,
)
from aegis_actors.roles import indicators as ind
from aegis_actors.roles import prompts, rules
from aegis_actors.roles.schemas import SCHEMAS, extract_json

PARAMS = {
    Posture.OFFENSIVE: PostureParams(
        entry_size=0.025, stop_loss=-0.015, take_profit=0.03, max_positions=5, limit_ratio=0.7
    ),
    Posture.DEFENSIVE: PostureParams(
        entry_size=0.015, stop_loss=-0.008, take_profit=0.018, max_positions=2, limit_ratio=1.0
    ),
}


def trend(n: int = 40, step: float = 0.002, zigzag: float = 1.5) -> list[float]:
    # a steady trend with a zig-zag (as a multiple of the step) so RSI stays below extremes
    return [100.0 * (1 + step) ** i * (1 + zigzag * abs(step) * (-1) ** i) for i in range(n)]


def ctx(prices: list[float], **kw: Any) -> Context:
    posture = kw.pop("posture", Posture.OFFENSIVE)
    event = MarketEvent(event_id="ev-1", symbol="AAPL", price=prices[-1] if prices else 1.0, ts=0)
    base: dict[str, Any] = {
        "event_id": "ev-1",
        "event": kw.pop("event", event),
        "symbol": "AAPL",
        "prices": prices,
        "capital": 100_000.0,
        "posture": posture,
        "params": PARAMS[posture],
        "mode": TradingMode.NORMAL,
        "price_age_s": 0.5,
    }
    return Context(**(base | kw))


def test_indicators() -> None:
    up = [float(x) for x in range(1, 31)]
    assert ind.rsi(up) == 100.0
    assert ind.rsi(up[::-1]) == pytest.approx(0.0)
    assert ind.momentum(up, 10) == pytest.approx(30 / 20 - 1)
    assert ind.sma(up, 5) == 28.0
    assert ind.volatility([100.0] * 30) == 0.0
    crossing = [10.0] * 20 + [9.0] * 5 + [20.0]
    assert ind.sma_cross(crossing, 5, 20) == 1
    assert ind.sma_cross([-x + 40 for x in crossing], 5, 20) == -1


def test_indicators_once_per_event_match_the_one_indicator_functions() -> None:
    # the context loader's one-pass set must equal, bit for bit, the plain functions, on
    # series short and long, flat, noisy, and with non-positive prints
    rng = random.Random(7)
    series: list[list[float]] = [[], [1.0], [5.0] * 30, trend(), trend(step=-0.003)]
    for _ in range(3000):
        n = rng.choice([2, 5, 10, 14, 15, 16, 20, 21, 22, 23, 40, 60])
        kind = rng.random()
        if kind < 0.4:
            series.append([100.0 * (1 + rng.gauss(0, 0.01)) ** i for i in range(n)])
        elif kind < 0.7:
            series.append([round(rng.uniform(1, 3), 1) for _ in range(n)])
        else:
            series.append([rng.choice([0.0, 1.0, 2.0, -1.0, 3.5]) for _ in range(n)])
    for prices in series:
        assert rules.compute(prices) == rules.compute_plain(prices), prices


def test_rules_answers_equal_validated_messages() -> None:
    # the rules build their messages unvalidated (the event path): each must be exactly
    # what validation would have made, field types and key order included
    for prices, posture in ((trend(), Posture.OFFENSIVE), (trend(step=-0.004), Posture.DEFENSIVE)):
        c = ctx(prices, posture=posture)
        a = rules.analyse(c, 1.0)
        v = rules.verify(c, a, 2.0)
        d = rules.decide(c, a, v, 3.0)
        short = rules.analyse(ctx(trend(5)), 1.0)
        for msg in (a, v, d, short):
            again = type(msg).model_validate(msg.model_dump())
            assert again == msg
            assert again.model_dump_json() == msg.model_dump_json()


def test_analyst_reads_trend_both_ways_and_range() -> None:
    now = 10.0
    up = rules.analyse(ctx(trend()), now)
    down = rules.analyse(ctx(trend(step=-0.002)), now)
    flat = rules.analyse(ctx([100.0 * (1 + 0.001 * (-1) ** i) for i in range(40)]), now)
    assert (up.direction, down.direction, flat.direction) == (
        Direction.UP,
        Direction.DOWN,
        Direction.FLAT,
    )
    assert up.confidence > 0.55 and up.expected_move_pct > 0
    assert "rsi=" in up.rationale and up.meta["prompt_version"] == rules.VERSION
    assert up.stamps["analysis"] == now
    short = rules.analyse(ctx(trend(5)), now)
    assert short.pattern == "insufficient_history" and short.confidence == 0


def test_overbought_trend_lowers_confidence() -> None:
    steady = rules.analyse(ctx(trend()), 0)
    assert ind.rsi(trend()) < rules.RSI_HIGH  # the zig-zag keeps it below overbought
    stretched = rules.analyse(ctx(trend(zigzag=0.3)), 0)
    assert "overbought" in stretched.pattern and "overbought" not in steady.pattern
    assert steady.direction is stretched.direction is Direction.UP
    assert stretched.confidence < steady.confidence


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"stale": True, "price_age_s": 45.0}, "stale"),
        ({"open_positions": 5}, "open positions, posture max 5"),
        ({"mode": TradingMode.LIMITED}, "allows no new entries"),
    ],
)
def test_verifier_vetoes(change: dict[str, Any], reason: str) -> None:
    v = rules.verify(ctx(trend(), **change), None, 0)
    assert not v.approve and any(reason in r for r in v.reasons)


def test_verifier_approves_a_clean_context() -> None:
    v = rules.verify(ctx(trend()), None, 0)
    assert v.approve and v.reasons == ["checks passed"]


def test_verifier_vetoes_a_wide_spread_and_a_bad_print() -> None:
    class Quoted(MarketEvent):
        bid: float
        ask: float

    quoted = Quoted(event_id="ev-1", symbol="AAPL", price=100, ts=0, bid=99.5, ask=100.5)
    wide = rules.verify(ctx(trend(), event=quoted), None, 0)
    assert not wide.approve and "spread 100.0 bps" in wide.reasons[0]
    jumped = trend() + [trend()[-1] * 1.05]
    bad = rules.verify(ctx(jumped), None, 0)
    assert not bad.approve and "bad print" in bad.reasons[0]


def test_verifier_vetoes_adding_to_a_full_position() -> None:
    prices = trend()
    big = PositionView(symbol="AAPL", qty=100, avg_price=prices[-1])  # ~11% of capital
    analysis = rules.analyse(ctx(prices), 0)
    v = rules.verify(ctx(prices, position=big), analysis, 0)
    assert not v.approve and "exposure" in v.reasons[0]


def test_commander_sizes_and_types_orders_by_posture() -> None:
    prices = trend(step=0.003, zigzag=1.05)
    results = {}
    for posture in (Posture.OFFENSIVE, Posture.DEFENSIVE):
        c = ctx(prices, posture=posture)
        a = rules.analyse(c, 0)
        d = rules.decide(c, a, rules.verify(c, a, 0), 1.0)
        results[posture] = d
        price = prices[-1]
        assert d.action is Action.BUY
        assert d.stop_loss == pytest.approx(price * (1 + PARAMS[posture].stop_loss), rel=1e-4)
        assert d.take_profit == pytest.approx(price * (1 + PARAMS[posture].take_profit), rel=1e-4)
        assert 0.25 <= d.size_fraction <= 1.0
    assert results[Posture.DEFENSIVE].order_type is OrderType.LIMIT  # 100 % limit
    assert results[Posture.OFFENSIVE].order_type is OrderType.MARKET  # strong signal, 30 % mkt


def test_no_entry_in_limited_mode_but_close_is_allowed() -> None:
    prices = trend(step=-0.003)
    c = ctx(prices, mode=TradingMode.LIMITED)
    a = rules.analyse(c, 0)
    assert rules.decide(c, a, rules.verify(c, a, 0), 0).action is Action.HOLD
    held = ctx(
        prices,
        mode=TradingMode.LIMITED,
        position=PositionView(symbol="AAPL", qty=10, avg_price=100),
    )
    d = rules.decide(held, a, rules.verify(held, a, 0), 0)
    assert d.action is Action.CLOSE and d.stop_loss is None


def test_prompts_are_versioned_and_filled_from_the_context() -> None:
    for role in ("analyst", "verifier", "commander"):
        t = prompts.latest(role)
        assert t.version == f"{role}.v1"
        c = ctx(trend())
        a = rules.analyse(c, 0)
        system, user = t.fill(prompts.values(c, a, rules.verify(c, a, 0)))
        assert "JSON" in system and "$" not in user and "AAPL" in user
        assert "offensive" in user


def test_answers_parse_from_fenced_json_and_reject_bad_values() -> None:
    ok = extract_json('```json\n{"verdict": "veto", "reasons": ["x"], "confidence": 0.5}\n```')
    assert SCHEMAS["verifier"].model_validate(ok)
    with pytest.raises(ValueError):
        extract_json("no json here")
    with pytest.raises(ValueError):
        SCHEMAS["commander"].model_validate(
            {"action": "buy", "size_fraction": 2.0, "confidence": 0.5}
        )
    assert math.isfinite(0.0)


def test_rules_backend_runs_the_whole_tree_and_records_provenance(
    aegis_factory: Any, vclock: Any
) -> None:
    from conftest import drive

    from aegis_actors.messages import GetStatus
    from aegis_actors.runtime import ANALYST, COMMANDER, STORE
    from aegis_actors.store.factory import open_database

    app = aegis_factory(feed={"symbols": ["AAPL", "MSFT"], "tick_interval_s": 0.5})
    drive(vclock, 30.0, step=0.5)
    rt = app.rt
    analyst = rt.directory.ask(ANALYST, GetStatus(), 5.0)
    commander = rt.directory.ask(COMMANDER, GetStatus(), 5.0)
    assert analyst["backend"] == "rules" and analyst["handled"] > 10
    assert commander["in_flight"] == 0 and "http_out" in commander
    assert rt.directory.ask(STORE, GetStatus(), 5.0) is not None
    app.stop("check rows")
    db = open_database(sqlite_path=app.settings.store.sqlite_path)
    try:
        rows = db.select("decisions")
    finally:
        db.close()
    assert rows
    versions = {r["prompt_versions"] for r in rows if r["verdict"] and r["analysis"]}
    assert versions and all(rules.VERSION in v for v in versions)
    assert all(r["tokens"] in ("{}", None) for r in rows)  # no LLM, no tokens
