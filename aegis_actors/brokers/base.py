"""The broker interface the execution actor talks to, whatever sits behind it.

Plain frozen dataclasses (not pydantic): they cross no actor boundary, and a broker call
sits on the order path where construction cost matters. `Side` and `OrderType` are the
same enums as in `aegis_actors.messages`, so an `Order` message's fields pass straight in.

Contract every broker keeps, so the execution actor can retry without fear:
- `submit` is idempotent by `client_order_id`: the same id twice returns the first `Ack`
  and never creates a second order. After a `BrokerError` the caller resubmits the same
  id (or looks it up with `order`) rather than minting a new one.
- each fill is returned exactly once, by `on_price` or by `poll_fills`, never both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aegis_actors.messages import OPEN_STATUSES, OrderStatus, OrderType, Side

__all__ = [
    "OPEN_STATUSES",
    "Account",
    "Ack",
    "Broker",
    "BrokerError",
    "BrokerFill",
    "BrokerOrder",
    "BrokerPosition",
    "OpenOrder",
    "OrderStatus",
    "OrderType",
    "Side",
]


@dataclass(frozen=True)
class BrokerOrder:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    order_type: OrderType
    limit_price: float | None = None


@dataclass(frozen=True)
class Ack:
    """The broker's answer to `submit`; `status` is the order's state when it returned."""

    client_order_id: str
    accepted: bool
    broker_order_id: str | None
    status: OrderStatus
    reason: str = ""


@dataclass(frozen=True)
class BrokerFill:
    fill_id: str
    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    fee: float
    ts: float


@dataclass(frozen=True)
class OpenOrder:
    """A snapshot of one order (any status, despite the name: Alpaca's order object)."""

    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    qty: float
    filled_qty: float
    order_type: OrderType
    limit_price: float | None
    status: OrderStatus


@dataclass(frozen=True)
class BrokerPosition:
    """qty > 0 is long, qty < 0 is short."""

    symbol: str
    qty: float
    avg_price: float


@dataclass(frozen=True)
class Account:
    cash: float
    equity: float
    buying_power: float


class BrokerError(Exception):
    """Transient broker failure (network, 5xx, 429): the order's state is unknown until
    reconciled with `order`/`open_orders`, so never treat it as a rejection."""


@runtime_checkable
class Broker(Protocol):
    """What the execution actor owns; called from that actor's thread only."""

    name: str
    durable: bool  # False only for a book that dies with the process (in-memory paper)

    def submit(self, order: BrokerOrder) -> Ack:
        """Place `order`; idempotent by client_order_id (a repeat returns the first Ack)."""
        ...

    def cancel(self, client_order_id: str) -> bool:
        """True if an open order was cancelled; False if unknown or already final."""
        ...

    def cancel_all(self) -> list[str]:
        """Cancel every open order; returns the client ids cancelled."""
        ...

    def order(self, client_order_id: str) -> OpenOrder | None:
        """The order under any status, or None if the broker never created it."""
        ...

    def open_orders(self) -> list[OpenOrder]: ...

    def positions(self) -> list[BrokerPosition]: ...

    def close_all_positions(self) -> list[Ack]:
        """Send market orders that flatten every position (open orders are left alone)."""
        ...

    def account(self) -> Account: ...

    def on_price(
        self, symbol: str, price: float, ts: float, *, open_price: float | None = None
    ) -> list[BrokerFill]:
        """Feed a market price; returns the fills it caused (paper). REST brokers return []."""
        ...

    def poll_fills(self) -> list[BrokerFill]:
        """Fills not yet returned by any call (REST: from the API; paper: submit-time fills)."""
        ...

    def last_price(self, symbol: str) -> float | None: ...

    def fills_for(self, client_order_id: str) -> list[BrokerFill]:
        """Every fill the venue made for that order, polled or not (reconciliation
        recovers from it the fills the ledger missed); [] where the venue keeps none."""
        ...
