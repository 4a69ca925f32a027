"""A local HTTP server speaking the Alpaca v2 trading subset `AlpacaBroker` uses.

For tests, benches and offline demos: it listens on 127.0.0.1, checks the key headers,
keeps orders, positions and cash, fills market orders at the price it was last given
(limit orders when that price crosses), and can be scripted to fail: a status code for
the next N matching requests, a hang past the client's timeout, or an order that is
created but whose answer is lost (the case that must never lead to a second order).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["AlpacaSim", "Fault"]

_OPEN = {"new", "accepted", "partially_filled", "pending_new"}


@dataclass
class Fault:
    method: str
    path: str  # prefix of the request path
    action: int | str  # an HTTP status, "hang" (answer after hang_s), "lost" (create, then 500)
    count: int = 1
    hang_s: float = 0.0


def _iso(ts: float) -> str:
    """RFC 3339 in UTC with microseconds, as Alpaca writes times (sorts as text)."""
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 1_000_000:06d}Z"
    )


class AlpacaSim:
    def __init__(
        self,
        key_id: str = "test-key",
        secret_key: str = "test-secret",
        cash: float = 100_000.0,
        fill_fraction: float = 1.0,
    ) -> None:
        self.key_id, self.secret_key = key_id, secret_key
        self.cash = cash
        self.fill_fraction = fill_fraction  # < 1: each price update fills this share of qty
        self.lock = threading.RLock()
        self.orders: dict[str, dict[str, Any]] = {}  # id -> order
        self.by_coid: dict[str, str] = {}
        self.created: dict[str, int] = {}  # client order id -> times created (must stay 1)
        self.positions: dict[str, tuple[float, float]] = {}  # symbol -> (signed qty, avg)
        self.prices: dict[str, float] = {}
        self.mark_offset: dict[str, float] = {}  # symbol -> factor on the reported mark
        self.faults: list[Fault] = []
        self.activities: list[dict[str, Any]] = []  # FILL account activities, oldest first
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle and scripting ---------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> AlpacaSim:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, path: str, action: int | str, count: int = 1, hang_s: float = 0.0):
        with self.lock:
            self.faults.append(Fault(method, path, action, count, hang_s))

    def set_price(self, symbol: str, price: float) -> None:
        """The broker's market moves: resting orders that can fill, fill."""
        with self.lock:
            self.prices[symbol] = price
            for o in list(self.orders.values()):
                if o["symbol"] == symbol and o["status"] in _OPEN:
                    self._try_fill(o)

    def open_orders(self) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.orders.values() if o["status"] in _OPEN]

    # -- the book --------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.method == method and path.startswith(f.path) and f.count > 0:
                    f.count -= 1
                    if f.count == 0:
                        self.faults.remove(f)
                    return f
        return None

    def _equity(self) -> float:
        return self.cash + sum(q * self.prices.get(s, a) for s, (q, a) in self.positions.items())

    def _reserved(self) -> float:
        return sum(
            (float(o["qty"]) - float(o["filled_qty"])) * self._ref(o)
            for o in self.orders.values()
            if o["status"] in _OPEN and o["side"] == "buy"
        )

    def _ref(self, o: dict[str, Any]) -> float:
        if o["type"] == "limit":
            return float(o["limit_price"])
        return self.prices.get(o["symbol"], 0.0)

    def _create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            symbol = str(body["symbol"])
            qty = float(body["qty"])
            side = str(body["side"])
            otype = str(body["type"])
            coid = str(body.get("client_order_id") or uuid.uuid4())
        except (KeyError, TypeError, ValueError) as exc:
            return 422, {"code": 40010000, "message": f"invalid order: {exc}"}
        if qty <= 0 or side not in ("buy", "sell") or otype not in ("market", "limit"):
            return 422, {"code": 40010000, "message": "invalid qty, side or type"}
        if otype == "limit" and not body.get("limit_price"):
            return 422, {"code": 40010000, "message": "limit_price is required"}
        if coid in self.by_coid:
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        o = {
            "id": str(uuid.uuid4()),
            "client_order_id": coid,
            "symbol": symbol,
            "qty": body["qty"],
            "filled_qty": "0",
            "filled_avg_price": None,
            "side": side,
            "type": otype,
            "order_type": otype,
            "limit_price": body.get("limit_price"),
            "time_in_force": body.get("time_in_force", "day"),
            "status": "new",
            "created_at": _iso(time.time()),
            "submitted_at": _iso(time.time()),
        }
        if side == "buy" and qty * self._ref(o) > self.cash - self._reserved() + 1e-9:
            return 403, {"code": 40310000, "message": "insufficient buying power"}
        self.orders[o["id"]] = o
        self.by_coid[coid] = o["id"]
        self.created[coid] = self.created.get(coid, 0) + 1
        o["status"] = "accepted"
        self._try_fill(o)
        return 200, dict(o)

    def _try_fill(self, o: dict[str, Any]) -> None:
        price = self.prices.get(o["symbol"])
        if price is None:
            return
        if o["type"] == "limit":
            limit = float(o["limit_price"])
            if (o["side"] == "buy" and price > limit) or (o["side"] == "sell" and price < limit):
                return
            price = min(price, limit) if o["side"] == "buy" else max(price, limit)
        qty, done = float(o["qty"]), float(o["filled_qty"])
        step = max(1.0, round(qty * self.fill_fraction)) if self.fill_fraction < 1 else qty
        take = min(step, qty - done)
        avg = float(o["filled_avg_price"] or 0.0)
        new_done = done + take
        o["filled_avg_price"] = str((avg * done + price * take) / new_done)
        o["filled_qty"] = str(new_done)
        o["status"] = "filled" if new_done >= qty - 1e-9 else "partially_filled"
        now = time.time()
        self.activities.append(
            {
                "id": f"{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}"
                f"{int(now * 1000) % 1000:03d}::{uuid.uuid4()}",
                "activity_type": "FILL",
                "transaction_time": _iso(now),
                "type": o["status"].replace("partially_filled", "partial_fill"),
                "price": str(price),
                "qty": str(take),
                "side": o["side"],
                "symbol": o["symbol"],
                "leaves_qty": str(qty - new_done),
                "order_id": o["id"],
                "cum_qty": str(new_done),
                "order_status": o["status"],
            }
        )
        signed = take if o["side"] == "buy" else -take
        self.cash -= signed * price
        q, a = self.positions.get(o["symbol"], (0.0, 0.0))
        nq = q + signed
        if abs(nq) < 1e-9:
            self.positions.pop(o["symbol"], None)
        elif q == 0 or (q > 0) == (signed > 0):
            self.positions[o["symbol"]] = (nq, (abs(q) * a + take * price) / abs(nq))
        elif (nq > 0) != (q > 0):
            self.positions[o["symbol"]] = (nq, price)
        else:
            self.positions[o["symbol"]] = (nq, a)

    def _activities(self, q: dict[str, str]) -> list[dict[str, Any]]:
        """Like Alpaca's: newest first unless direction=asc; `after`/`until` bound the
        transaction time; `page_token` is the id of the last row of the previous page."""
        rows = list(self.activities)
        if q.get("after"):
            rows = [a for a in rows if a["transaction_time"] > q["after"]]
        if q.get("until"):
            rows = [a for a in rows if a["transaction_time"] < q["until"]]
        if q.get("direction", "desc") != "asc":
            rows.reverse()
        if q.get("page_token"):
            ids = [a["id"] for a in rows]
            rows = rows[ids.index(q["page_token"]) + 1 :] if q["page_token"] in ids else []
        return [dict(a) for a in rows[: min(int(q.get("page_size", 100)), 100)]]

    def _position_json(self, symbol: str, q: float, a: float) -> dict[str, Any]:
        mark = self.prices.get(symbol, a) * self.mark_offset.get(symbol, 1.0)
        return {
            "symbol": symbol,
            "qty": str(abs(q)) if q > 0 else str(-abs(q)),
            "side": "long" if q > 0 else "short",
            "avg_entry_price": str(a),
            "current_price": str(mark),
            "market_value": str(q * mark),
        }

    # -- HTTP ------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stall)

            def log_message(self, *_args: Any) -> None:
                pass

            def _send(self, code: int, body: Any = None) -> None:
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if raw:
                    self.wfile.write(raw)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with sim.lock:
                    sim.requests.append((method, path))
                if (
                    self.headers.get("APCA-API-KEY-ID") != sim.key_id
                    or self.headers.get("APCA-API-SECRET-KEY") != sim.secret_key
                ):
                    return self._send(403, {"message": "forbidden"})
                fault = sim._take_fault(method, path)
                if fault is not None and fault.action == "hang":
                    time.sleep(fault.hang_s)  # the simulated broker is slow; the client times out
                elif fault is not None and isinstance(fault.action, int):
                    return self._send(fault.action, {"message": f"scripted {fault.action}"})
                with sim.lock:
                    code, body = sim.dispatch(method, path, query, raw)
                if fault is not None and fault.action == "lost":
                    return self._send(500, {"message": "internal error (order was created)"})
                self._send(code, body)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler

    def dispatch(self, method: str, path: str, q: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/v2/account":
            eq = self._equity()
            bp = self.cash - self._reserved()
            return 200, {
                "status": "ACTIVE",
                "cash": str(self.cash),
                "equity": str(eq),
                "buying_power": str(bp),
            }
        if method == "POST" and path == "/v2/orders":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return 422, {"message": "body is not JSON"}
            return self._create(body)
        if method == "GET" and path == "/v2/orders:by_client_order_id":
            oid = self.by_coid.get(q.get("client_order_id", ""))
            return (200, dict(self.orders[oid])) if oid else (404, {"message": "order not found"})
        if method == "GET" and path == "/v2/orders":
            status = q.get("status", "open")
            rows = [
                dict(o)
                for o in self.orders.values()
                if status == "all" or (o["status"] in _OPEN) == (status == "open")
            ]
            return 200, rows[: int(q.get("limit", 500))]
        m = re.fullmatch(r"/v2/orders/([^/]+)", path)
        if method == "DELETE" and m:
            o = self.orders.get(m.group(1))
            if o is None:
                return 404, {"message": "order not found"}
            if o["status"] not in _OPEN:
                return 422, {"message": "order is not cancelable"}
            o["status"] = "canceled"
            return 204, None
        if method == "DELETE" and path == "/v2/orders":
            out = []
            for o in self.orders.values():
                if o["status"] in _OPEN:
                    o["status"] = "canceled"
                    out.append({"id": o["id"], "status": 200, "body": dict(o)})
            return 207, out
        if method == "GET" and path == "/v2/account/activities/FILL":
            return 200, self._activities(q)
        if method == "GET" and path == "/v2/positions":
            return 200, [self._position_json(s, q_, a) for s, (q_, a) in self.positions.items()]
        if method == "DELETE" and path == "/v2/positions":
            out = []
            for s, (q_, _a) in list(self.positions.items()):
                side = "sell" if q_ > 0 else "buy"
                code, body = self._create(
                    {"symbol": s, "qty": str(abs(q_)), "side": side, "type": "market"}
                )
                out.append({"symbol": s, "status": code, "body": body})
            return 207, out
        return 404, {"message": f"no route {method} {path}"}
