"""The money tests' shared kit: the decisions, orders and books they start from.

One builder per thing so every test speaks of the same entry (a guerrilla buy of AAPL at
100 with full conviction) and states only what it changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aegis_actors.brokers import BrokerFill, BrokerOrder, PaperBroker
from aegis_actors.brokers.durable_paper import DurablePaperBroker
from aegis_actors.messages import Action, Decision, Order, OrderType, Posture, Side
from supervisors.clock import VirtualClock


def buy(decision_id: str = "d-1", now: float = 0.0, symbol: str = "AAPL") -> Decision:
    """A full-conviction guerrilla buy at 100, the entry most money tests start from."""
    return Decision(
        event_id=f"ev-{decision_id}",
        decision_id=decision_id,
        symbol=symbol,
        action=Action.BUY,
        size_fraction=1.0,
        limit_price=100.0,
        confidence=0.9,
        posture=Posture.GUERRILLA,
        reference_price=100.0,
        stamps={"t0": now},
    )


def market_order(
    client_order_id: str = "ae-1", qty: float = 1.0, symbol: str = "AAPL", **fields: Any
) -> Order:
    """A market buy as execution would write it ahead of sending."""
    base: dict[str, Any] = {
        "client_order_id": client_order_id,
        "decision_id": "d",
        "event_id": "e",
        "symbol": symbol,
        "side": Side.BUY,
        "qty": qty,
        "order_type": OrderType.MARKET,
        "created_at": 1.0,
    }
    return Order(**(base | fields))


def book_holding(
    state: Path, clock: VirtualClock, symbol: str = "AAPL", qty: float = 10.0
) -> tuple[DurablePaperBroker, BrokerFill]:
    """A durable paper book that bought `qty` of `symbol` at 100 (order `ae-entry`)."""
    broker = DurablePaperBroker(PaperBroker(clock_now=clock.now), str(state))
    broker.on_price(symbol, 100.0, clock.now())
    broker.submit(BrokerOrder("ae-entry", symbol, Side.BUY, qty, OrderType.MARKET))
    return broker, broker.poll_fills()[0]


def long_position(fill: BrokerFill, qty: float = 10.0) -> dict[str, Any]:
    """The ledger row of the position `book_holding` opened, stops at 95 / 120."""
    return {
        "symbol": fill.symbol,
        "qty": qty,
        "avg_price": fill.price,
        "opened_at": 1000.0,
        "posture": "guerrilla",
        "stop_loss": 95.0,
        "take_profit": 120.0,
    }


def pg_store(env: Path, dsn: str, **extra: Any) -> dict[str, Any]:
    """The store settings of a PostgreSQL ledger with its local spool in the test's folder."""
    return {"postgres_dsn": dsn, "spool_path": str(env / "var" / "spool.db"), **extra}
