"""An Alpaca-compatible REST broker over `requests` (the v2 trading API subset we use).

Every outcome is one of three: an `Ack` the broker gave (accepted, or rejected with its
reason: 403 forbidden / 422 unprocessable), a known absence (404), or a `BrokerError`
meaning "state unknown" (429, 5xx, timeouts, connection loss, after the retries). A
submit whose answer is lost is never simply sent again: the order is first looked up by
its client order id, and only an order the broker does not hold is retried, under the
same id, so the broker's own uniqueness check backs ours. Fills come from polling orders:
each order's filled quantity is compared with what was already reported.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from aegis_actors.brokers.base import (
    OPEN_STATUSES,
    Account,
    Ack,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    OpenOrder,
    OrderStatus,
    OrderType,
    Side,
)

__all__ = ["AlpacaBroker", "map_status"]

_STATUS = {
    "new": OrderStatus.NEW,
    "pending_new": OrderStatus.NEW,
    "accepted": OrderStatus.ACCEPTED,
    "accepted_for_bidding": OrderStatus.ACCEPTED,
    "pending_replace": OrderStatus.ACCEPTED,
    "replaced": OrderStatus.ACCEPTED,
    "calculated": OrderStatus.ACCEPTED,
    "held": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "done_for_day": OrderStatus.CANCELLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "pending_cancel": OrderStatus.ACCEPTED,
    "expired": OrderStatus.EXPIRED,
    "stopped": OrderStatus.ACCEPTED,
    "suspended": OrderStatus.ACCEPTED,
    "rejected": OrderStatus.REJECTED,
}


def map_status(raw: str) -> OrderStatus:
    return _STATUS.get(str(raw).lower(), OrderStatus.ACCEPTED)


class _Unknown(Exception):
    """Transport or server trouble: the request's effect is unknown."""


def _num(x: Any, default: float = 0.0) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


class AlpacaBroker:
    name: str = "alpaca"
    durable: bool = True

    def __init__(
        self,
        url: str,
        key_id: str,
        secret_key: str,
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        retry_backoff_s: float = 0.1,
        poll_every_s: float = 1.0,
        price_ttl_s: float = 5.0,
        clock_now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url:
            raise ValueError("alpaca broker needs broker.url")
        self.base = url.rstrip("/")
        self.timeout = timeout_s
        self.retries = retries
        self.backoff = retry_backoff_s
        self.poll_every = poll_every_s
        self.price_ttl = price_ttl_s
        self._now = clock_now
        self._sleep = sleep
        self._http = requests.Session()
        self._http.headers.update({"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key})
        self._lock = threading.RLock()
        self._acks: dict[str, Ack] = {}
        self._attempted: set[str] = set()  # submits whose answer may have been lost
        self._ids: dict[str, str] = {}  # client order id -> broker order id
        self._tracked: dict[str, tuple[float, float]] = {}  # coid -> (filled qty, avg price)
        self._outbox: list[BrokerFill] = []
        self._prices: dict[str, tuple[float, float]] = {}  # symbol -> (price, seen at)
        self._last_poll = -math.inf
        self.requests_sent = 0

    # -- HTTP --------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kw: Any) -> requests.Response:
        """One request; raises _Unknown on transport trouble, 429 and 5xx."""
        self.requests_sent += 1
        try:
            r = self._http.request(method, self.base + path, timeout=self.timeout, **kw)
        except requests.Timeout as exc:
            raise _Unknown(f"{method} {path}: timed out after {self.timeout}s") from exc
        except requests.RequestException as exc:
            raise _Unknown(f"{method} {path}: {type(exc).__name__}") from exc
        if r.status_code == 429:
            raise _Unknown(f"{method} {path}: 429 rate limited")
        if r.status_code >= 500:
            raise _Unknown(f"{method} {path}: {r.status_code} server error")
        if r.status_code in (401, 403) and method == "GET":
            raise BrokerError(f"{method} {path}: {r.status_code} not authorised (check the keys)")
        return r

    def _retrying(self, method: str, path: str, **kw: Any) -> requests.Response:
        """Safe-to-repeat requests (reads, cancels) with retries, else BrokerError."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff * attempt)
            try:
                return self._call(method, path, **kw)
            except _Unknown as exc:
                last = str(exc)
        raise BrokerError(last)

    @staticmethod
    def _message(r: requests.Response) -> str:
        try:
            body = r.json()
            return str(body.get("message") or body)
        except ValueError:
            return r.text[:200] or r.reason

    # -- orders ------------------------------------------------------------------------

    def submit(self, order: BrokerOrder) -> Ack:
        with self._lock:
            first = self._acks.get(order.client_order_id)
            if first is not None:
                return first
            self._attempted.add(order.client_order_id)
            body: dict[str, Any] = {
                "symbol": order.symbol,
                "qty": _qty(order.qty),
                "side": order.side.value,
                "type": order.order_type.value,
                "time_in_force": "day",
                "client_order_id": order.client_order_id,
            }
            if order.order_type is OrderType.LIMIT and order.limit_price is not None:
                body["limit_price"] = str(order.limit_price)
            last = ""
            for attempt in range(self.retries + 1):
                if attempt:
                    self._sleep(self.backoff * attempt)
                    # The last answer was lost: does the broker hold the order already?
                    try:
                        existing = self._by_client_id(order.client_order_id)
                    except _Unknown as exc:
                        last = str(exc)
                        continue
                    if existing is not None:
                        return self._remember(order.client_order_id, existing)
                try:
                    r = self._call("POST", "/v2/orders", json=body)
                except _Unknown as exc:
                    last = str(exc)
                    continue
                if r.status_code in (200, 201):
                    return self._remember(order.client_order_id, r.json())
                reason = f"{r.status_code} {self._message(r)}"
                if r.status_code == 422 and "client_order_id" in reason.lower():
                    # Duplicate id: the order exists (an earlier attempt landed).
                    try:
                        existing = self._by_client_id(order.client_order_id)
                    except _Unknown as exc:
                        last = str(exc)
                        continue
                    if existing is not None:
                        return self._remember(order.client_order_id, existing)
                kind = {403: "forbidden", 422: "unprocessable"}.get(r.status_code, "refused")
                ack = Ack(
                    order.client_order_id, False, None, OrderStatus.REJECTED, f"{kind}: {reason}"
                )
                self._acks[order.client_order_id] = ack
                return ack
            raise BrokerError(f"submit {order.client_order_id}: {last}")

    def _remember(self, coid: str, raw: dict[str, Any]) -> Ack:
        o = self._parse(raw)
        self._ids[coid] = o.broker_order_id
        accepted = o.status is not OrderStatus.REJECTED
        ack = Ack(coid, accepted, o.broker_order_id, o.status, "" if accepted else "rejected")
        self._acks[coid] = ack
        if accepted:
            self._tracked.setdefault(coid, (0.0, 0.0))
            self._collect(raw)
        return ack

    def _by_client_id(self, coid: str) -> dict[str, Any] | None:
        r = self._call("GET", "/v2/orders:by_client_order_id", params={"client_order_id": coid})
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise _Unknown(f"lookup {coid}: {r.status_code} {self._message(r)}")
        data: dict[str, Any] = r.json()
        return data

    def cancel(self, client_order_id: str) -> bool:
        with self._lock:
            oid = self._ids.get(client_order_id)
            if oid is None:
                found = self.order(client_order_id)
                if found is None:
                    return False
                oid = found.broker_order_id
            r = self._retrying("DELETE", f"/v2/orders/{oid}")
            return r.status_code in (200, 204)

    def cancel_all(self) -> list[str]:
        with self._lock:
            r = self._retrying("DELETE", "/v2/orders")
            if r.status_code not in (200, 207):
                raise BrokerError(f"cancel all: {r.status_code} {self._message(r)}")
            by_oid = {oid: coid for coid, oid in self._ids.items()}
            out = []
            for item in r.json() or []:
                if int(item.get("status", 0)) not in (200, 204):
                    continue
                body = item.get("body") or {}
                coid = body.get("client_order_id") or by_oid.get(str(item.get("id")))
                if coid:
                    out.append(str(coid))
            return out

    def order(self, client_order_id: str) -> OpenOrder | None:
        with self._lock:
            try:
                raw = self._by_client_id(client_order_id)
            except _Unknown as exc:
                raise BrokerError(str(exc)) from None
            if raw is None:
                return None
            if client_order_id in self._attempted and client_order_id not in self._acks:
                self._remember(client_order_id, raw)  # a lost answer found: track its fills
            o = self._parse(raw)
            self._ids[client_order_id] = o.broker_order_id
            if o.status in OPEN_STATUSES and client_order_id not in self._tracked:
                # Working from before this process (found at reconciliation): follow its
                # later fills from what it had filled by now.
                self._tracked[client_order_id] = (o.filled_qty, _num(raw.get("filled_avg_price")))
            return o

    def open_orders(self) -> list[OpenOrder]:
        with self._lock:
            r = self._retrying("GET", "/v2/orders", params={"status": "open", "limit": 500})
            return [self._parse(raw) for raw in r.json() or []]

    def close_all_positions(self) -> list[Ack]:
        with self._lock:
            r = self._retrying("DELETE", "/v2/positions")
            acks = []
            for item in r.json() or []:
                body = item.get("body") or {}
                if int(item.get("status", 0)) in (200, 201) and body.get("client_order_id"):
                    acks.append(self._remember(str(body["client_order_id"]), body))
            return acks

    # -- state -------------------------------------------------------------------------

    def positions(self) -> list[BrokerPosition]:
        with self._lock:
            r = self._retrying("GET", "/v2/positions")
            out = []
            now = self._now()
            for p in r.json() or []:
                qty = abs(_num(p.get("qty")))
                if str(p.get("side", "long")) == "short":
                    qty = -qty
                sym = str(p["symbol"])
                out.append(BrokerPosition(sym, qty, _num(p.get("avg_entry_price"))))
                price = _num(p.get("current_price"))
                if price > 0:
                    self._prices[sym] = (price, now)
            return sorted(out, key=lambda p: p.symbol)

    def account(self) -> Account:
        with self._lock:
            a = self._retrying("GET", "/v2/account").json()
            return Account(_num(a.get("cash")), _num(a.get("equity")), _num(a.get("buying_power")))

    def on_price(
        self, symbol: str, price: float, ts: float, *, open_price: float | None = None
    ) -> list[BrokerFill]:
        return []  # the broker fills on its own market; we learn of fills by polling

    def last_price(self, symbol: str) -> float | None:
        """The broker's own latest price (position mark or fill), while fresh."""
        seen = self._prices.get(symbol)
        if seen is None or self._now() - seen[1] > self.price_ttl:
            return None
        return seen[0]

    def fills_for(self, client_order_id: str) -> list[BrokerFill]:
        """Not read from this venue yet (its account activities API): reconciliation then
        takes the order's filled qty and average price from the order itself."""
        return []

    def poll_fills(self) -> list[BrokerFill]:
        """Fills since the last call: open orders in one request, then each tracked order
        that left the open list, by its client order id. At most every `poll_every_s`."""
        with self._lock:
            now = self._now()
            if self._tracked and now - self._last_poll >= self.poll_every:
                self._last_poll = now
                try:
                    r = self._call("GET", "/v2/orders", params={"status": "open", "limit": 500})
                    seen = set()
                    for raw in r.json() or []:
                        seen.add(str(raw.get("client_order_id")))
                        self._collect(raw)
                    for coid in [c for c in self._tracked if c not in seen]:
                        raw = self._by_client_id(coid)
                        if raw is None:
                            self._tracked.pop(coid, None)
                        else:
                            self._collect(raw)
                except _Unknown:
                    pass  # next poll picks them up: fills are computed from totals
            fills, self._outbox = self._outbox, []
            return fills

    # -- parsing -----------------------------------------------------------------------

    def _collect(self, raw: dict[str, Any]) -> None:
        """Turn the growth of an order's filled qty since last seen into one fill."""
        coid = str(raw.get("client_order_id"))
        if coid not in self._tracked:
            return
        done_qty, done_avg = self._tracked[coid]
        filled = _num(raw.get("filled_qty"))
        avg = _num(raw.get("filled_avg_price"))
        if filled > done_qty + 1e-9 and avg > 0:
            qty = filled - done_qty
            price = (filled * avg - done_qty * done_avg) / qty
            o = self._parse(raw)
            ts = self._now()
            self._outbox.append(
                BrokerFill(
                    # Named by the cumulative qty it brings the order to: unique forever and
                    # the same in every process that sees the same growth.
                    fill_id=f"{o.broker_order_id}-{filled:g}",
                    client_order_id=coid,
                    broker_order_id=o.broker_order_id,
                    symbol=o.symbol,
                    side=o.side,
                    qty=qty,
                    price=price,
                    fee=0.0,
                    ts=ts,
                )
            )
            self._prices[o.symbol] = (price, ts)
            self._tracked[coid] = (filled, avg)
        if map_status(str(raw.get("status"))) not in OPEN_STATUSES:
            self._tracked.pop(coid, None)

    @staticmethod
    def _parse(raw: dict[str, Any]) -> OpenOrder:
        limit = raw.get("limit_price")
        return OpenOrder(
            client_order_id=str(raw.get("client_order_id")),
            broker_order_id=str(raw.get("id")),
            symbol=str(raw.get("symbol")),
            side=Side(str(raw.get("side"))),
            qty=_num(raw.get("qty")),
            filled_qty=_num(raw.get("filled_qty")),
            order_type=OrderType(str(raw.get("type", raw.get("order_type", "market")))),
            limit_price=None if limit in (None, "") else _num(limit),
            status=map_status(str(raw.get("status"))),
        )


def _qty(q: float) -> str:
    return str(int(q)) if float(q).is_integer() else str(q)
