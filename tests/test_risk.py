"""Pre-trade risk checks (SPEC 3, 5.2), one refusal per check, and the order mix."""

from __future__ import annotations

import pytest

from aegis_actors.context import posture_params
from aegis_actors.execution.mismatch import MismatchGuard, Tier, tier, verify_price
from aegis_actors.execution.risk import OrderMix, PreTradeRisk, client_order_id
from aegis_actors.messages import Order, OrderType, Posture, Side, TradingMode
from aegis_actors.settings import RiskSettings, Settings

PARAMS = posture_params(Settings(), Posture.GUERRILLA)  # 2 %, max 3 positions


def order(qty: float = 10, intent: str = "entry") -> Order:
    return Order(
        client_order_id="c",
        decision_id="d",
        event_id="e",
        symbol="AAPL",
        side=Side.BUY,
        qty=qty,
        order_type=OrderType.LIMIT,
        limit_price=100.0,
        intent=intent,
        created_at=0.0,
    )


def check(risk: PreTradeRisk, o: Order, **kw: object) -> str | None:
    args: dict = {
        "mode": TradingMode.NORMAL,
        "params": PARAMS,
        "price": 100.0,
        "equity": 100_000.0,
        "open_positions": 0,
        "now": 0.0,
    }
    args.update(kw)
    r = risk.check(o, **args)
    return None if r is None else r.check


def test_each_check_refuses_and_is_counted() -> None:
    risk = PreTradeRisk(RiskSettings(), 100_000.0, 0.0)
    assert check(risk, order(20)) is None  # exactly 2 % of capital
    assert check(risk, order(21)) == "size"
    assert check(risk, order(20), equity=50_000.0) == "size"  # current capital, not start
    assert check(risk, order(), open_positions=3) == "max_positions"
    assert check(risk, order(), mode=TradingMode.LIMITED) == "mode"
    assert check(risk, order(intent="exit"), mode=TradingMode.LIMITED) is None
    assert check(risk, order(intent="exit"), mode=TradingMode.HALTED) == "mode"
    assert check(risk, order(), equity=96_900.0) == "daily_loss"
    assert risk.refused == {"size": 2, "max_positions": 1, "mode": 2, "daily_loss": 1}


def test_minute_loss_is_from_the_peak_within_the_minute() -> None:
    risk = PreTradeRisk(RiskSettings(minute_loss_limit_pct=1.0, daily_loss_limit_pct=50), 1e5, 0)
    risk.mark_equity(102_000.0, 10.0)
    risk.mark_equity(100_900.0, 30.0)
    assert check(risk, order(), equity=100_900.0, now=30.0) == "minute_loss"
    risk.mark_equity(100_900.0, 75.0)  # the peak has left the minute
    assert check(risk, order(), equity=100_900.0, now=75.0) is None


def test_rate_is_200_a_minute_for_every_order() -> None:
    risk = PreTradeRisk(RiskSettings(), 100_000.0, 0.0)
    for i in range(200):
        assert check(risk, order(1), now=i * 0.1) is None
        risk.record_sent(i * 0.1)
    assert check(risk, order(1, intent="exit"), now=20.0) == "rate"
    assert check(risk, order(1), now=60.05) is None  # the first one left the window


@pytest.mark.parametrize(("ratio", "limits"), [(0.7, 14), (0.9, 18), (1.0, 20), (0.0, 0)])
def test_order_mix_holds_the_share_deterministically(ratio: float, limits: int) -> None:
    a, b = OrderMix(20), OrderMix(20)
    seq_a, seq_b = [], []
    for _ in range(60):
        for mix, seq in ((a, seq_a), (b, seq_b)):
            t = mix.choose(ratio)
            mix.record(t)
            seq.append(t)
    assert seq_a == seq_b
    assert sum(t is OrderType.LIMIT for t in seq_a[-20:]) == limits


def test_client_order_id_is_deterministic() -> None:
    assert client_order_id("d1", "entry") == client_order_id("d1", "entry")
    assert client_order_id("d1", "entry") != client_order_id("d1", "exit")


def test_mismatch_tiers_at_their_lines() -> None:
    assert tier(100.49, 100.0, 0.5, 2.0) is Tier.IGNORE
    assert tier(100.5, 100.0, 0.5, 2.0) is Tier.CONFIRM
    assert tier(102.0, 100.0, 0.5, 2.0) is Tier.CONFIRM
    assert tier(102.01, 100.0, 0.5, 2.0) is Tier.HALT
    g = MismatchGuard(0.5, 2.0, 60.0)
    assert g.assess("X", None, 100.0) is Tier.IGNORE  # unknown broker price: no evidence
    g.confirm("X", 0.0)
    assert g.is_confirmed("X", 59.0) and not g.is_confirmed("X", 60.0)
    assert g.first_halt("X") and not g.first_halt("X")
    g.assess("X", 100.0, 100.0)  # back in line: the episode ends
    assert g.first_halt("X")


def test_verifier_rule_for_a_price_check() -> None:
    assert verify_price(101.0, 100.0, 100.2, 1.0, 2.0)[0]
    assert not verify_price(101.0, 100.0, 100.2, 45.0, 2.0)[0]  # stale feed
    assert not verify_price(103.0, 100.0, 100.0, 1.0, 2.0)[0]
    assert not verify_price(101.0, 100.0, None, None, 2.0)[0]
