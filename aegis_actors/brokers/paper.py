"""A simulated broker for paper trading and bar replay.

It fills only on prices fed to it through `on_price`, so a backtest can never fill on a
price it has not yet seen; in `bar_mode` it also refuses the price that was current when an
order arrived (that bar's close is already history), filling no earlier than the next
bar's open. Ids are sequential from `id_prefix`, so replaying a session gives the same
order and fill ids; a live run gives each new book its own prefix, so ids are unique
forever (a fill id is the broker order id plus the order's fill sequence).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any

from aegis_actors.brokers.base import (
    Account,
    Ack,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    OpenOrder,
    OrderStatus,
    OrderType,
    Side,
)

__all__ = ["PaperBroker"]

_EPS = 1e-9  # quantities closer than this to zero are zero (float noise, not shares)


@dataclass(slots=True)
class _Order:
    """The mutable book entry behind an `OpenOrder` snapshot."""

    client_order_id: str
    broker_order_id: str
    symbol: str
    side: Side
    qty: float
    order_type: OrderType
    limit_price: float | None
    status: OrderStatus
    filled_qty: float = 0.0
    fees_charged: float = 0.0
    fill_count: int = 0
    flatten: bool = False  # sent by close_all_positions: never blocked for cash
    reason: str = ""

    @property
    def remaining(self) -> float:
        return self.qty - self.filled_qty

    def snapshot(self) -> OpenOrder:
        return OpenOrder(
            client_order_id=self.client_order_id,
            broker_order_id=self.broker_order_id,
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            filled_qty=self.filled_qty,
            order_type=self.order_type,
            limit_price=self.limit_price,
            status=self.status,
        )


@dataclass(slots=True)
class _Position:
    qty: float
    avg_price: float


def _finite_positive(x: object) -> bool:
    """Numbers only (numpy scalars too), never bools, NaN or infinities."""
    if type(x) is float:  # the common case, without the ABC check below
        return 0.0 < x < math.inf  # NaN fails both comparisons
    if not isinstance(x, Real) or isinstance(x, bool):
        return False
    value = float(x)
    return math.isfinite(value) and value > 0


class PaperBroker:
    """In-memory broker: cash account (no margin), slippage, commissions, partial fills."""

    name: str = "paper"
    durable: bool = False  # the book dies with the process

    def __init__(
        self,
        *,
        capital: float = 100_000.0,
        slippage_bps: float = 5.0,
        commission_per_share: float = 0.005,
        min_commission: float = 1.0,
        max_fill_fraction: float = 1.0,
        bar_mode: bool = False,
        clock_now: Callable[[], float] = time.time,
        id_prefix: str = "paper",
    ) -> None:
        if not (math.isfinite(capital) and capital >= 0):
            raise ValueError(f"capital must be finite and >= 0, got {capital!r}")
        for label, value in (
            ("slippage_bps", slippage_bps),
            ("commission_per_share", commission_per_share),
            ("min_commission", min_commission),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be finite and >= 0, got {value!r}")
        if not (0 < max_fill_fraction <= 1):
            raise ValueError(f"max_fill_fraction must be in (0, 1], got {max_fill_fraction!r}")
        self._slip = slippage_bps / 10_000.0
        self._cps = commission_per_share
        self._min_fee = min_commission
        self._fraction = max_fill_fraction
        self._bar_mode = bar_mode
        self._now = clock_now
        self._prefix = id_prefix
        self._lock = threading.RLock()
        self._cash = float(capital)
        self._realized = 0.0
        self._positions: dict[str, _Position] = {}
        self._last: dict[str, float] = {}
        self._acks: dict[str, Ack] = {}  # every submit's first answer, rejections too
        self._orders: dict[str, _Order] = {}  # accepted orders, in submission order
        self._open: dict[str, _Order] = {}  # the still-working subset, kept small for matching
        self._outbox: list[BrokerFill] = []  # fills made outside on_price, for poll_fills
        self._history: dict[str, list[BrokerFill]] = {}  # every fill, by client order id
        self._seq = 0
        self._flatten_seq = 0

    # -- orders ---------------------------------------------------------------------------

    def submit(self, order: BrokerOrder) -> Ack:
        """Place an order; a repeated client_order_id returns the first Ack untouched."""
        with self._lock:
            first = self._acks.get(order.client_order_id)
            if first is not None:
                return first
            return self._submit(order, flatten=False)

    def cancel(self, client_order_id: str) -> bool:
        with self._lock:
            rec = self._open.pop(client_order_id, None)
            if rec is None:
                return False
            rec.status = OrderStatus.CANCELLED
            return True

    def cancel_all(self) -> list[str]:
        with self._lock:
            ids = list(self._open)
            for rec in self._open.values():
                rec.status = OrderStatus.CANCELLED
            self._open.clear()
            return ids

    def order(self, client_order_id: str) -> OpenOrder | None:
        with self._lock:
            rec = self._orders.get(client_order_id)
            return None if rec is None else rec.snapshot()

    def open_orders(self) -> list[OpenOrder]:
        with self._lock:
            return [rec.snapshot() for rec in self._open.values()]

    def close_all_positions(self) -> list[Ack]:
        """Market orders flattening each position, net of flatten orders still working,
        so calling it twice before the first batch fills does not overshoot into a
        reverse position. Open non-flatten orders are left alone: cancel_all() first."""
        with self._lock:
            pending: dict[str, float] = {}
            for rec in self._open.values():
                if rec.flatten:
                    sign = 1.0 if rec.side is Side.BUY else -1.0
                    pending[rec.symbol] = pending.get(rec.symbol, 0.0) + sign * rec.remaining
            acks: list[Ack] = []
            for symbol in sorted(self._positions):
                net = self._positions[symbol].qty + pending.get(symbol, 0.0)
                if abs(net) <= _EPS:
                    continue
                side = Side.SELL if net > 0 else Side.BUY
                order = BrokerOrder(self._flatten_id(), symbol, side, abs(net), OrderType.MARKET)
                acks.append(self._submit(order, flatten=True))
            return acks

    # -- state ----------------------------------------------------------------------------

    def positions(self) -> list[BrokerPosition]:
        with self._lock:
            return [
                BrokerPosition(symbol, p.qty, p.avg_price)
                for symbol, p in sorted(self._positions.items())
            ]

    def account(self) -> Account:
        """Equity marks positions at the last price; buying power is cash less what open
        buy orders would cost (no margin)."""
        with self._lock:
            equity = self._cash + sum(
                p.qty * self._last.get(symbol, p.avg_price) for symbol, p in self._positions.items()
            )
            return Account(self._cash, equity, self._buying_power())

    @property
    def realized_pnl(self) -> float:
        """Realised PnL on reductions, before fees (paper only; not part of `Broker`)."""
        with self._lock:
            return self._realized

    def last_price(self, symbol: str) -> float | None:
        with self._lock:
            return self._last.get(symbol)

    def poll_fills(self) -> list[BrokerFill]:
        """Fills made at submit time (non-bar market/marketable orders), each once."""
        with self._lock:
            fills, self._outbox = self._outbox, []
            return fills

    def fills_for(self, client_order_id: str) -> list[BrokerFill]:
        """Every fill this book made for that order (this process's book only: an
        in-memory book has no history from before it was created)."""
        with self._lock:
            return list(self._history.get(client_order_id, []))

    def on_price(
        self, symbol: str, price: float, ts: float, *, open_price: float | None = None
    ) -> list[BrokerFill]:
        """Match resting orders for `symbol` against `open_price` (if given) then `price`;
        each order fills at most once per call. Only orders already resting match, so in
        bar_mode an order never fills on the close it was decided on."""
        if not _finite_positive(price):
            raise ValueError(f"price for {symbol} must be finite and > 0, got {price!r}")
        if open_price is not None and not _finite_positive(open_price):
            raise ValueError(f"open_price for {symbol} must be finite and > 0: {open_price!r}")
        prices = [price] if open_price is None else [open_price, price]
        with self._lock:
            fills: list[BrokerFill] = []
            for rec in [r for r in self._open.values() if r.symbol == symbol]:
                for p in prices:
                    exec_price = self._executable(rec, p)
                    if exec_price is not None:
                        fill = self._fill(rec, exec_price, ts)
                        if fill is not None:
                            fills.append(fill)
                        break
            self._last[symbol] = float(price)
            return fills

    # -- persistence (so a paper book can outlive its process, like a real broker's) ----

    def export_state(self) -> dict[str, Any]:
        """The whole book as JSON-able data; `restore_state` rebuilds it exactly."""
        with self._lock:
            return {
                "cash": self._cash,
                "realized": self._realized,
                "positions": {s: [p.qty, p.avg_price] for s, p in self._positions.items()},
                "last": dict(self._last),
                "acks": [asdict(a) for a in self._acks.values()],
                "orders": [asdict(r) for r in self._orders.values()],
                "open": list(self._open),
                "outbox": [asdict(f) for f in self._outbox],
                "seq": self._seq,
                "flatten_seq": self._flatten_seq,
                "prefix": self._prefix,
            }

    def restore_state(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._cash = float(state["cash"])
            self._realized = float(state["realized"])
            self._positions = {s: _Position(q, a) for s, (q, a) in state["positions"].items()}
            self._last = {s: float(p) for s, p in state["last"].items()}
            self._acks = {
                a["client_order_id"]: Ack(**{**a, "status": OrderStatus(a["status"])})
                for a in state["acks"]
            }
            self._orders = {
                r["client_order_id"]: _Order(
                    **{
                        **r,
                        "side": Side(r["side"]),
                        "order_type": OrderType(r["order_type"]),
                        "status": OrderStatus(r["status"]),
                    }
                )
                for r in state["orders"]
            }
            self._open = {cid: self._orders[cid] for cid in state["open"]}
            self._outbox = [BrokerFill(**{**f, "side": Side(f["side"])}) for f in state["outbox"]]
            self._seq = int(state["seq"])
            self._flatten_seq = int(state["flatten_seq"])
            self._prefix = str(state.get("prefix", self._prefix))

    # -- internals ------------------------------------------------------------------------

    def _submit(self, order: BrokerOrder, *, flatten: bool) -> Ack:
        cid = order.client_order_id
        reason, side, order_type = self._validate(order)
        if not reason and side is Side.BUY and order_type is not None and not flatten:
            ref = self._reference_price(order_type, order.symbol, order.limit_price)
            cost = order.qty * ref + max(self._min_fee, order.qty * self._cps)
            if cost > self._buying_power() + _EPS:
                reason = f"insufficient buying power: needs {cost:.2f}"
        if reason or side is None or order_type is None:
            ack = Ack(cid, False, None, OrderStatus.REJECTED, reason or "invalid order")
            self._acks[cid] = ack
            return ack
        self._seq += 1
        rec = _Order(
            client_order_id=cid,
            broker_order_id=f"{self._prefix}-{self._seq}",
            symbol=order.symbol,
            side=side,
            qty=float(order.qty),
            order_type=order_type,
            limit_price=None if order.limit_price is None else float(order.limit_price),
            status=OrderStatus.ACCEPTED,
            flatten=flatten,
        )
        self._orders[cid] = rec
        self._open[cid] = rec
        last = self._last.get(order.symbol)
        if not self._bar_mode and last is not None:
            exec_price = self._executable(rec, last)
            if exec_price is not None:
                fill = self._fill(rec, exec_price, self._now())
                if fill is not None:
                    self._outbox.append(fill)
        accepted = rec.status is not OrderStatus.REJECTED
        ack = Ack(cid, accepted, rec.broker_order_id, rec.status, rec.reason)
        self._acks[cid] = ack
        return ack

    @staticmethod
    def _validate(order: BrokerOrder) -> tuple[str, Side | None, OrderType | None]:
        """A reason to reject (empty if none), plus the side and type parsed."""
        if not isinstance(order.client_order_id, str) or not order.client_order_id:
            return "client_order_id must be a non-empty string", None, None
        if not isinstance(order.symbol, str) or not order.symbol:
            return "symbol must be a non-empty string", None, None
        try:
            side = Side(order.side)
        except ValueError:
            return f"unknown side {order.side!r}", None, None
        try:
            order_type = OrderType(order.order_type)
        except ValueError:
            return f"unknown order type {order.order_type!r}", side, None
        if not _finite_positive(order.qty):
            return f"qty must be finite and > 0, got {order.qty!r}", side, order_type
        if order_type is OrderType.LIMIT and not _finite_positive(order.limit_price):
            reason = f"limit order needs a finite limit_price > 0, got {order.limit_price!r}"
            return reason, side, order_type
        return "", side, order_type

    def _flatten_id(self) -> str:
        while True:
            self._flatten_seq += 1
            cid = f"{self._prefix}-flatten-{self._flatten_seq}"
            if cid not in self._acks:
                return cid

    def _executable(self, rec: _Order, price: float) -> float | None:
        """The price `rec` would fill at against market price `price`, or None."""
        if rec.order_type is OrderType.MARKET:
            return price * (1 + self._slip) if rec.side is Side.BUY else price * (1 - self._slip)
        limit = rec.limit_price
        assert limit is not None  # validated at submit
        if rec.side is Side.BUY:
            return min(limit, price) if price <= limit else None
        return max(limit, price) if price >= limit else None

    def _chunk(self, rec: _Order) -> float:
        """Qty for the next fill: at most max_fill_fraction of the original qty (whole
        shares when the order is whole shares); the last remainder fills fully."""
        remaining = rec.remaining
        if self._fraction >= 1:
            return remaining
        raw = rec.qty * self._fraction
        step = max(1.0, math.floor(raw + _EPS)) if float(rec.qty).is_integer() else raw
        return remaining if remaining <= step + _EPS else step

    def _fee(self, rec: _Order, qty: float) -> float:
        """Commission for this fill: the order as a whole pays max(min, shares * rate), so
        the minimum is charged once per order, not once per partial."""
        total = max(self._min_fee, (rec.filled_qty + qty) * self._cps)
        return max(0.0, total - rec.fees_charged)

    def _fill(self, rec: _Order, price: float, ts: float) -> BrokerFill | None:
        qty = self._chunk(rec)
        final = qty >= rec.remaining
        fee = self._fee(rec, qty)
        if rec.side is Side.BUY and not rec.flatten and qty * price + fee > self._cash + _EPS:
            # Prices moved since submit and cash no longer covers it: no margin, so stop.
            rec.status = OrderStatus.REJECTED if rec.filled_qty <= 0 else OrderStatus.CANCELLED
            rec.reason = "insufficient cash at fill"
            del self._open[rec.client_order_id]
            return None
        rec.fill_count += 1
        rec.fees_charged += fee
        if final:
            rec.filled_qty = rec.qty
            rec.status = OrderStatus.FILLED
            del self._open[rec.client_order_id]
        else:
            rec.filled_qty += qty
            rec.status = OrderStatus.PARTIALLY_FILLED
        signed = qty if rec.side is Side.BUY else -qty
        self._cash -= signed * price + fee
        self._apply_position(rec.symbol, signed, price)
        fill = BrokerFill(
            fill_id=f"{rec.broker_order_id}-{rec.fill_count}",
            client_order_id=rec.client_order_id,
            broker_order_id=rec.broker_order_id,
            symbol=rec.symbol,
            side=rec.side,
            qty=qty,
            price=price,
            fee=fee,
            ts=ts,
        )
        self._history.setdefault(rec.client_order_id, []).append(fill)
        return fill

    def _apply_position(self, symbol: str, signed: float, price: float) -> None:
        """Average in on adds, realise PnL on reductions, restart the average on a flip."""
        pos = self._positions.get(symbol)
        if pos is None or abs(pos.qty) <= _EPS:
            self._positions[symbol] = _Position(signed, price)
            return
        new_qty = pos.qty + signed
        if (pos.qty > 0) == (signed > 0):
            pos.avg_price = (abs(pos.qty) * pos.avg_price + abs(signed) * price) / abs(new_qty)
            pos.qty = new_qty
            return
        closed = min(abs(signed), abs(pos.qty))
        direction = 1.0 if pos.qty > 0 else -1.0
        self._realized += closed * (price - pos.avg_price) * direction
        if abs(new_qty) <= _EPS:
            del self._positions[symbol]
        elif (new_qty > 0) != (pos.qty > 0):
            self._positions[symbol] = _Position(new_qty, price)
        else:
            pos.qty = new_qty

    def _reference_price(self, rec_type: OrderType, symbol: str, limit: float | None) -> float:
        """The worst price a buy is expected to pay: its limit, or the last price plus
        slippage (0 while no price is known; the cash check at fill still guards it)."""
        if rec_type is OrderType.LIMIT and limit is not None:
            return limit
        last = self._last.get(symbol)
        return 0.0 if last is None else last * (1 + self._slip)

    def _buying_power(self) -> float:
        """Cash less what the open buy orders would take, commissions included."""
        reserved = 0.0
        for rec in self._open.values():
            if rec.side is Side.BUY and not rec.flatten:
                ref = self._reference_price(rec.order_type, rec.symbol, rec.limit_price)
                fee_left = max(0.0, max(self._min_fee, rec.qty * self._cps) - rec.fees_charged)
                reserved += rec.remaining * ref + fee_left
        return max(0.0, self._cash - reserved)
