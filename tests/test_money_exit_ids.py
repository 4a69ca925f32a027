"""Issue 11, defect 2: a position must never lose its stop-loss after a restart.

An exit's client order id counted its attempts from 1 in every run, so an exit written
ahead in one run but never sent got the same id after the restart; the store answered
"duplicate" and the position stayed "exiting" through an order that did not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import settle, wait_until
from money_kit import book_holding, pg_store

from aegis_actors.brokers import Side
from aegis_actors.execution.risk import client_order_id
from aegis_actors.messages import Order, PositionClosed, Tick
from aegis_actors.messages import OrderType as MOrderType
from aegis_actors.messages import Side as MSide
from aegis_actors.runtime import EXECUTION
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock
from tests.execution_harness import Harness

OPENED_AT = 1000.0


def first_stop_exit_id(symbol: str, opened_at: float) -> str:
    """The id the first stop-loss exit of that position gets (attempt 1)."""
    return client_order_id(f"stop_loss|{symbol}|{opened_at}|1", "exit")


@pytest.mark.integration
def test_stop_loss_written_but_never_sent_before_a_restart_still_closes(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    state = aegis_env / "var" / "paper.json"
    broker, entry_fill = book_holding(state, vclock)
    stuck = first_stop_exit_id("AAPL", OPENED_AT)

    db = open_database(postgres_dsn=pg_dsn)
    now = vclock.now()
    common = {"symbol": "AAPL", "qty": 10.0, "order_type": "market", "created_at": now}
    db.insert(
        "orders",
        {
            **common,
            "client_order_id": "ae-entry",
            "decision_id": "d-entry",
            "side": "buy",
            "intent": "entry",
            "status": "filled",
            "filled_qty": 10.0,
            "broker_order_id": entry_fill.broker_order_id,
        },
    )
    db.insert(
        "fills",
        {
            "fill_id": entry_fill.fill_id,
            "client_order_id": "ae-entry",
            "symbol": "AAPL",
            "side": "buy",
            "qty": 10.0,
            "price": entry_fill.price,
            "fee": entry_fill.fee,
            "ts": now,
        },
    )
    # The first run's stop-loss: written ahead, then the process died before the send.
    db.insert(
        "orders",
        {
            **common,
            "client_order_id": stuck,
            "decision_id": "stop_loss",
            "side": "sell",
            "intent": "exit",
            "status": "new",
        },
    )
    db.insert(
        "positions",
        {
            "symbol": "AAPL",
            "qty": 10.0,
            "avg_price": entry_fill.price,
            "opened_at": OPENED_AT,
            "posture": "guerrilla",
            "stop_loss": 95.0,
            "take_profit": 120.0,
        },
    )

    app = aegis_factory(
        store=pg_store(aegis_env, pg_dsn),
        broker={"paper_state_path": str(state)},
        feed={"symbols": ["SPY"]},
    )
    app.rt.directory.tell(EXECUTION, Tick(symbol="AAPL", price=90.0, ts=vclock.now()))
    wait_until(lambda: app.broker.positions() == [], timeout=30, what="the stop-loss to close AAPL")
    settle()

    def exit_rows() -> list[dict[str, Any]]:
        return [r for r in db.select("orders") if r["intent"] == "exit" and r["filled_qty"]]

    wait_until(exit_rows, what="the exit's fill in the ledger")  # the store may be mid-write
    rows = {r["client_order_id"]: r for r in db.select("orders")}
    assert rows[stuck]["status"] == "cancelled"  # never reached the broker: not resent
    exits = [r for r in rows.values() if r["intent"] == "exit" and r["client_order_id"] != stuck]
    assert [(r["status"], r["filled_qty"]) for r in exits] == [("filled", 10.0)]
    wait_until(lambda: db.select("positions") == [], what="the position gone from the ledger")
    fills = {f["client_order_id"] for f in db.select("fills")}
    assert exits[0]["client_order_id"] in fills
    db.close()


def test_an_exit_id_the_ledger_holds_but_the_broker_never_saw_is_retried_fresh() -> None:
    """The same defect inside one run (an actor restart): a fresh id, never a dead one."""
    h = Harness(slippage_bps=0.0)
    h.tick("AAPL", 100.0)
    h.decide("AAPL")
    h.tick("AAPL", 100.0)
    held = h.core.positions["AAPL"]
    held.exit_attempts = 0  # as a restarted core that lost the count would have it
    stuck = first_stop_exit_id("AAPL", held.opened_at)
    h.ports.ledger[stuck] = Order(
        client_order_id=stuck,
        decision_id="stop_loss",
        event_id="",
        symbol="AAPL",
        side=MSide.SELL,
        qty=held.qty,
        order_type=MOrderType.MARKET,
        intent="exit",
        created_at=0.0,
    )
    assert held.stop_loss is not None
    h.tick("AAPL", held.stop_loss * 0.99)
    sent = [o.client_order_id for _, o in h.broker.submitted if o.side is Side.SELL]
    assert len(sent) == 1 and sent[0] != stuck
    assert "AAPL" not in h.core.positions
    assert [m.reason for m in h.ports.of(PositionClosed)] == ["stop_loss"]
