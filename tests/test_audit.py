"""The ledger audit catches each kind of bad ledger it promises to catch.

Each test writes a small ledger by hand into a real SQLite file (one on PostgreSQL), with
the broker's book beside it, breaks exactly one promise and checks that the audit names
that promise and only that one. The sound ledger passes clean, so none of these can pass
by reporting everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aegis_actors.audit import (
    BrokerFillView,
    BrokerOrderView,
    BrokerView,
    LedgerView,
    Violation,
    ViolationKind,
    audit,
)
from aegis_actors.store import open_database

NOW = 1_000_000.0
V = ViolationKind


def order(coid: str, **kw: Any) -> dict[str, Any]:
    row = {
        "client_order_id": coid,
        "symbol": "AAPL",
        "side": "buy",
        "qty": 10.0,
        "order_type": "limit",
        "limit_price": 100.0,
        "intent": "entry",
        "status": "filled",
        "filled_qty": 10.0,
        "created_at": NOW - 60,
        "updated_at": NOW - 59,
    }
    return {**row, **kw}


def fill(fid: str, coid: str, qty: float = 10.0, side: str = "buy", **kw: Any) -> dict[str, Any]:
    return {
        "fill_id": fid,
        "client_order_id": coid,
        "symbol": "AAPL",
        "side": side,
        "qty": qty,
        "price": 100.0,
        "fee": 1.0,
        "ts": NOW - 59,
        **kw,
    }


def sound() -> dict[str, list[dict[str, Any]]]:
    """An entry of 10 AAPL filled in two parts, its position with a stop, an exit of 4
    still working at the broker, and a cancelled order the broker never saw."""
    return {
        "orders": [
            order("e1"),
            order(
                "x1",
                side="sell",
                qty=4.0,
                intent="exit",
                status="accepted",
                filled_qty=0.0,
                created_at=NOW - 10,
            ),
            order("c1", status="cancelled", filled_qty=0.0, error="write-ahead not confirmed"),
        ],
        "fills": [fill("f1", "e1", 6.0), fill("f2", "e1", 4.0)],
        "positions": [
            {"symbol": "AAPL", "qty": 10.0, "avg_price": 100.0, "stop_loss": 98.0, "opened_at": 1}
        ],
    }


def sound_broker() -> BrokerView:
    return BrokerView(
        orders={
            "e1": BrokerOrderView("e1", 10.0, 10.0, "filled"),
            "x1": BrokerOrderView("x1", 4.0, 0.0, "accepted"),
        },
        fills={
            "f1": BrokerFillView("f1", "e1", "AAPL", "buy", 6.0, 100.0),
            "f2": BrokerFillView("f2", "e1", "AAPL", "buy", 4.0, 100.0),
        },
        positions={"AAPL": 10.0},
        sent={"e1": 1, "x1": 1},
    )


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Callable[[dict[str, list[dict[str, Any]]]], str]:
    def write(tables: dict[str, list[dict[str, Any]]]) -> str:
        path = tmp_path / f"ledger-{len(list(tmp_path.iterdir()))}.db"
        db = open_database(sqlite_path=str(path))
        try:
            for table, rows in tables.items():
                for row in rows:
                    db.insert(table, row)
        finally:
            db.close()
        return str(path)

    return write


def kinds(found: list[Violation]) -> set[ViolationKind]:
    return {v.kind for v in found}


def test_a_sound_ledger_passes(sqlite_ledger: Callable[..., str]) -> None:
    assert audit(sqlite_ledger(sound()), sound_broker(), now=NOW) == []


def test_an_order_sent_twice_is_caught(sqlite_ledger: Callable[..., str]) -> None:
    broker = replace(sound_broker(), sent={"e1": 2, "x1": 1})
    found = audit(sqlite_ledger(sound()), broker, now=NOW)
    assert kinds(found) == {V.DUPLICATE_ORDER}
    assert [v.key for v in found] == ["e1"]


def test_a_client_order_id_twice_in_the_ledger_is_caught() -> None:
    t = sound()
    view = LedgerView(
        t["orders"] + [order("e1", status="cancelled", filled_qty=0.0)], t["fills"], t["positions"]
    )
    found = audit(view, None, now=NOW)
    assert V.DUPLICATE_ORDER in kinds(found)
    assert any(v.kind is V.DUPLICATE_ORDER and v.key == "e1" for v in found)


def test_a_filled_order_with_a_missing_fill_is_caught(sqlite_ledger: Callable[..., str]) -> None:
    t = sound()
    t["fills"] = [fill("f1", "e1", 6.0)]  # defect 1: the second fill was silently dropped
    t["positions"][0]["qty"] = 6.0
    found = audit(sqlite_ledger(t), None, now=NOW)
    assert kinds(found) == {V.FILL_SUM}
    assert found[0].key == "e1" and "fills sum to 6" in found[0].detail


def test_a_position_that_does_not_follow_its_fills_is_caught(
    sqlite_ledger: Callable[..., str],
) -> None:
    t = sound()
    t["positions"][0]["qty"] = 0.0  # defect 1: closed in the ledger with no fill
    found = audit(sqlite_ledger(t), None, now=NOW)
    assert kinds(found) == {V.POSITION_FILLS}
    assert found[0].key == "AAPL"


def test_a_ledger_that_disagrees_with_the_broker_is_caught(
    sqlite_ledger: Callable[..., str],
) -> None:
    ledger = sqlite_ledger(sound())
    extra_fill = BrokerFillView("f3", "x1", "AAPL", "sell", 4.0, 101.0)
    b = sound_broker()
    cases = {
        "missing fill": replace(b, fills={**b.fills, "f3": extra_fill}),
        "position": replace(b, positions={"AAPL": 6.0}),
        "status": replace(b, orders={**b.orders, "e1": BrokerOrderView("e1", 10, 10, "accepted")}),
        "no write-ahead": replace(b, sent={**b.sent, "zz": 1}),
    }
    for what, broker in cases.items():
        found = audit(ledger, broker, now=NOW)
        assert V.LEDGER_BROKER in kinds(found), what
        assert kinds(found) <= {V.LEDGER_BROKER, V.NO_EXIT_PATH}, (what, found)


def test_a_write_ahead_row_past_its_deadline_is_caught(sqlite_ledger: Callable[..., str]) -> None:
    t = sound()
    t["orders"].append(order("n1", status="new", filled_qty=0.0, created_at=NOW - 30))
    t["orders"].append(order("n2", status="new", filled_qty=0.0, created_at=NOW - 0.5))
    found = audit(sqlite_ledger(t), sound_broker(), now=NOW, write_ahead_deadline_s=2.0)
    assert [(v.kind, v.key) for v in found] == [(V.STALE_NEW, "n1")]  # n2 is still in time


def test_a_position_exiting_through_a_dead_order_is_caught(
    sqlite_ledger: Callable[..., str],
) -> None:
    """Defect 2: the exit is `accepted` in the ledger but the broker never had it."""
    b = sound_broker()
    broker = replace(b, orders={"e1": b.orders["e1"]}, sent={"e1": 1})
    found = audit(sqlite_ledger(sound()), broker, now=NOW)
    assert V.NO_EXIT_PATH in kinds(found)
    assert any(v.kind is V.NO_EXIT_PATH and "x1" in v.detail for v in found)


def test_an_open_position_without_a_stop_is_caught(sqlite_ledger: Callable[..., str]) -> None:
    t = sound()
    t["positions"][0]["stop_loss"] = None
    found = audit(sqlite_ledger(t), sound_broker(), now=NOW)
    assert [(v.kind, v.key) for v in found] == [(V.NO_EXIT_PATH, "AAPL")]


def test_the_paper_broker_file_reads_back(tmp_path: Path) -> None:
    """The durable paper broker's own file is a broker view the audit accepts."""
    from aegis_actors.brokers import BrokerOrder
    from aegis_actors.brokers.durable_paper import DurablePaperBroker
    from aegis_actors.brokers.paper import PaperBroker
    from aegis_actors.messages import OrderType, Side

    path = tmp_path / "paper.json"
    broker = DurablePaperBroker(PaperBroker(capital=100_000.0), str(path))
    broker.on_price("AAPL", 100.0, NOW)
    broker.submit(BrokerOrder("e1", "AAPL", Side.BUY, 10.0, OrderType.MARKET))
    broker.on_price("AAPL", 100.0, NOW + 1)
    broker.poll_fills()
    view = BrokerView.from_paper_state(path)
    assert view.sent == {"e1": 1}
    assert view.orders["e1"].status == "filled" and view.positions == {"AAPL": 10.0}
    assert sum(f.qty for f in view.fills.values()) == 10.0


@pytest.mark.integration
def test_the_audit_reads_a_postgres_ledger(pg_dsn: str) -> None:
    db = open_database(postgres_dsn=pg_dsn)
    try:
        t = sound()
        t["fills"] = t["fills"][:1]
        t["positions"][0]["qty"] = 6.0
        for table, rows in t.items():
            for row in rows:
                db.insert(table, row)
    finally:
        db.close()
    found = audit(pg_dsn, None, now=NOW)
    assert [(v.kind, v.key) for v in found] == [(V.FILL_SUM, "e1")]
