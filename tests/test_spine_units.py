"""Pure parts of the spine: tick checks, the intake, the mode machine, risk, sla, rules."""

from __future__ import annotations

import math

import pytest

from aegis_actors.gateway.intake import Intake
from aegis_actors.gateway.synthetic import SyntheticMarket
from aegis_actors.gateway.ticks import check_tick
from aegis_actors.messages import (
    CONTEXT,
    T0,
    Context,
    Direction,
    MarketEvent,
    Posture,
    PostureParams,
    TradingMode,
)
from aegis_actors.roles import rules
from aegis_actors.watchdog.sla import StageHistograms, stage_latencies

KNOWN = frozenset({"AAPL"})


@pytest.mark.parametrize(
    ("tick", "reason"),
    [
        (("AAPL", 10.0, 5.0, 100.0), None),
        (("ZZZ", 10.0, 5.0, 100.0), "unknown_symbol"),
        (("AAPL", math.nan, 5.0, 100.0), "bad_price"),
        (("AAPL", -1.0, 5.0, 100.0), "bad_price"),
        (("AAPL", "10", 5.0, 100.0), "bad_price"),
        (("AAPL", True, 5.0, 100.0), "bad_price"),
        (("AAPL", 10.0, -5.0, 100.0), "bad_volume"),
        (("AAPL", 10.0, 5.0, math.inf), "bad_timestamp"),
        (("AAPL", 10.0, 5.0, 99.0), "timestamp_backwards"),
        (("AAPL", 10.0, 5.0, 1000.0), "future_timestamp"),
    ],
)
def test_tick_checks(tick: tuple, reason: str | None) -> None:
    assert check_tick(*tick, known=KNOWN, last_ts=99.5, now=100.0) == reason


def ev(symbol: str, n: int) -> MarketEvent:
    return MarketEvent(event_id=f"e{n}", symbol=symbol, price=1.0, ts=float(n))


def test_intake_one_in_flight_per_symbol_latest_wins() -> None:
    i = Intake()
    assert i.offer("A", ev("A", 1))
    i.admit("A", "e1")
    assert i.offer("B", ev("B", 2))  # other symbols are not held up
    assert not i.offer("A", ev("A", 3))
    assert not i.offer("A", ev("A", 4))
    assert i.coalesced == 1
    assert i.done("A", "e3") is False  # a stale report frees nothing
    assert i.done("A", "e1") is True
    assert "A" not in i.inflight
    nxt = i.next(0.0)
    assert isinstance(nxt, MarketEvent) and nxt.event_id == "e4"
    assert i.shed == {"coalesced": 1}


PARAMS = PostureParams(
    entry_size=0.02, stop_loss=-0.012, take_profit=0.024, max_positions=3, limit_ratio=0.9
)


def test_stage_latencies_and_histograms() -> None:
    lat = stage_latencies({T0: 10.0, CONTEXT: 10.02})
    assert lat == {"detect_to_analysis": pytest.approx(20.0)}
    h = StageHistograms()
    for ms in range(1, 101):
        h.record("analysis", float(ms))
    s = h.summary()["analysis"]
    assert s["count"] == 100 and 49 <= s["p50_ms"] <= 51 and 98 <= s["p99_ms"] <= 100


def context(prices: list[float], **kw: object) -> Context:
    e = MarketEvent(event_id="e1", symbol="AAPL", price=prices[-1], ts=0.0)
    base = dict(
        event_id="e1",
        event=e,
        symbol="AAPL",
        prices=prices,
        capital=100_000.0,
        posture=Posture.GUERRILLA,
        params=PARAMS,
        mode=TradingMode.NORMAL,
    )
    base.update(kw)
    return Context(**base)  # type: ignore[arg-type]


def test_rules_roles_trade_a_clear_trend_and_veto_stale_data() -> None:
    up = [100.0 * (1.001**i) for i in range(30)]
    ctx = context(up)
    a = rules.analyse(ctx, 1.0)
    assert a.direction is Direction.UP and a.confidence > 0.55
    v = rules.verify(ctx, None, 1.0)
    assert v.approve
    d = rules.decide(ctx, a, v, 1.0)
    assert d.action.value == "buy" and d.stop_loss < up[-1] < d.take_profit
    stale = rules.verify(context(up, stale=True, price_age_s=45.0), None, 1.0)
    assert not stale.approve and "stale" in stale.reasons[0]
    limited = rules.verify(context(up, mode=TradingMode.LIMITED), None, 1.0)
    assert not limited.approve


def test_synthetic_market_is_deterministic_per_seed() -> None:
    a, b = SyntheticMarket(["A", "B"], seed=3), SyntheticMarket(["A", "B"], seed=3)
    assert [a.step() for _ in range(5)] == [b.step() for _ in range(5)]
    assert SyntheticMarket(["A"], seed=4).step() != SyntheticMarket(["A"], seed=3).step()


def test_a_handler_for_no_message_class_fails_when_the_actor_is_built() -> None:
    """One dispatch convention, checked at start: `on_<Message>` must name a message."""
    from aegis_actors.base import AegisActor, check_handlers
    from aegis_actors.messages import Heartbeat

    class Renamed(AegisActor):
        def on_Heartbeat(self, _msg: Heartbeat) -> None: ...

        def on_HeartBeatOld(self, _msg: object) -> None: ...  # its message was renamed

    with pytest.raises(TypeError, match="on_HeartBeatOld: no message class"):
        check_handlers(Renamed)

    class Fine(AegisActor):
        def on_Heartbeat(self, _msg: Heartbeat) -> None: ...

    check_handlers(Fine)


def test_trusted_messages_are_the_validated_ones() -> None:
    # an internal message built unvalidated: same fields, defaults, order and equality
    ev = MarketEvent(event_id="ev-1", symbol="AAPL", price=10.0, ts=1.0)
    fast = MarketEvent.trusted(event_id="ev-1", symbol="AAPL", price=10.0, ts=1.0)
    assert fast == ev and fast.model_dump_json() == ev.model_dump_json()
    other = MarketEvent.trusted(event_id="ev-2", symbol="AAPL", ts=1.0)
    assert other.stamps == {} and other.stamps is not fast.stamps  # a factory per message
    stamped = ev.stamp(CONTEXT, 2.0)
    assert stamped.stamps == {CONTEXT: 2.0} and ev.stamps == {}  # a copy, the original kept
    assert stamped == ev.model_copy(update={"stamps": {CONTEXT: 2.0}})
    with pytest.raises(TypeError):
        MarketEvent.trusted(event_id="ev-1", symbol="AAPL", ts=1.0, nope=1)
    with pytest.raises(TypeError):
        MarketEvent.trusted(symbol="AAPL", ts=1.0)  # event_id missing
    with pytest.raises(ValueError):
        fast.symbol = "MSFT"  # type: ignore[misc]  # frozen like any message
