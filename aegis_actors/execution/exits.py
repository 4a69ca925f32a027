"""Exits: when a position must go (stop-loss, take-profit) and the order that closes it.

An exit's client order id is deterministic from the position and its attempt count; the
count is restored from the ledger at start (reconcile.py), so an exit written ahead in
one run is never re-minted under the same id in the next (issue 11, defect 2).
"""

from __future__ import annotations

from aegis_actors.execution.positions import Held
from aegis_actors.execution.risk import client_order_id
from aegis_actors.messages import Order, OrderType, Side


def exit_reason(held: Held, price: float) -> str:
    """stop_loss | take_profit | "" at this price."""
    long = held.qty > 0
    if held.stop_loss is not None and (
        price <= held.stop_loss if long else price >= held.stop_loss
    ):
        return "stop_loss"
    if held.take_profit is not None and (
        price >= held.take_profit if long else price <= held.take_profit
    ):
        return "take_profit"
    return ""


def pnl_pct(held: Held, price: float) -> float:
    return (price / held.avg_price - 1.0) * (1 if held.qty > 0 else -1) * 100.0


def exit_order(held: Held, key: str, event_id: str, now: float) -> Order:
    """A market order flattening `held`; each call is a new attempt with a new id."""
    held.exit_attempts += 1
    seed = f"{key}|{held.symbol}|{held.opened_at}|{held.exit_attempts}"
    return Order(
        client_order_id=client_order_id(seed, "exit"),
        decision_id=key,
        event_id=event_id,
        symbol=held.symbol,
        side=Side.SELL if held.qty > 0 else Side.BUY,
        qty=abs(held.qty),
        order_type=OrderType.MARKET,
        intent="exit",
        posture=held.posture,
        created_at=now,
    )
