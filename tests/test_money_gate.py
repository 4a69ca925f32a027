"""The split execution core: the gate answers with typed verdicts (no "refused:<check>"
strings for callers to parse) and the pieces compose the way the core uses them."""

from __future__ import annotations

from aegis_actors.context import posture_params
from aegis_actors.execution.gate import Cleared, Gate, HoldForVerifier, MismatchHalt
from aegis_actors.execution.results import OrderDenied, Placed, in_flight
from aegis_actors.messages import Order, OrderType, Posture, Side, TradingMode
from aegis_actors.settings import Settings


def order(qty: float = 10.0, intent: str = "entry") -> Order:
    return Order(
        client_order_id="ae-1",
        decision_id="d",
        event_id="e",
        symbol="AAPL",
        side=Side.BUY,
        qty=qty,
        order_type=OrderType.MARKET,
        intent=intent,
        posture=Posture.GUERRILLA,
        created_at=0.0,
    )


def check(gate: Gate, o: Order, **kw: object) -> object:
    s = Settings()
    args: dict = {
        "mode": TradingMode.NORMAL,
        "params": posture_params(s, Posture.GUERRILLA),
        "price": 100.0,
        "equity": 100_000.0,
        "open_positions": 0,
        "now": 0.0,
        "broker_price": 100.0,
        "feed_price": 100.0,
    }
    args.update(kw)
    return gate.check(o, **args)


def test_the_gate_answers_with_typed_verdicts() -> None:
    gate = Gate(Settings().risk, 100_000.0, 0.0)
    assert check(gate, order()) == Cleared()
    denied = check(gate, order(qty=1000.0))
    assert isinstance(denied, OrderDenied) and denied.check == "size"
    assert check(gate, order(), mode=TradingMode.LIMITED) == OrderDenied(
        "mode", "mode limited allows no new entries"
    )
    assert check(gate, order(intent="exit"), mode=TradingMode.LIMITED) == Cleared()
    assert check(gate, order(), feed_price=101.0) == HoldForVerifier()
    assert check(gate, order(intent="exit"), feed_price=101.0, liquidation=True) == Cleared()
    assert check(gate, order(), feed_price=110.0) == MismatchHalt("AAPL", 100.0, 110.0)


def test_results_say_whether_an_exit_is_in_flight() -> None:
    assert in_flight(Placed("ae-1")) and str(Placed("ae-1")) == "accepted"
    assert not in_flight(OrderDenied("rate", "too many"))
    assert str(OrderDenied("rate", "too many")) == "refused:rate: too many"
