"""The ledger audit: what an operator checks after a crash, an outage or a bad day.

It reads the durable ledger (SQLite path or PostgreSQL DSN) and, when there is one, the
broker's own book, and returns typed violations instead of raising, so the chaos script
can count them and a test can assert on their kinds. Every rule is one money-safety
promise of ARCHITECTURE.md "Orders": an order is never sent twice, a fill is never lost,
positions follow the fills, the ledger agrees with the broker, a write-ahead never lingers,
and every open position can still be closed.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = [
    "BrokerFillView",
    "BrokerOrderView",
    "BrokerView",
    "LedgerView",
    "Violation",
    "ViolationKind",
    "audit",
]

EPS = 1e-6
# Ledger statuses under which an order may still trade (the store has written a few
# spellings over time; the audit accepts them all rather than miss one).
OPEN_STATUSES = frozenset({"new", "sent", "accepted", "partially_filled", "unknown"})
DEAD_STATUSES = frozenset({"cancelled", "rejected", "expired", "failed", "error"})


class ViolationKind(StrEnum):
    DUPLICATE_ORDER = "duplicate_order"  # a client order id twice in the ledger or at the broker
    FILL_SUM = "fill_sum"  # an order's fills do not add up to its filled (or ordered) qty
    POSITION_FILLS = "position_fills"  # a ledger position differs from the net of its fills
    LEDGER_BROKER = "ledger_broker"  # ledger and broker disagree (order, fill, position)
    STALE_NEW = "stale_new"  # a write-ahead row still `new` past its deadline
    NO_EXIT_PATH = "no_exit_path"  # an open position nothing can close (dead exit, no stop)


@dataclass(frozen=True)
class Violation:
    kind: ViolationKind
    key: str  # the client order id, fill id or symbol concerned
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}: {self.detail}"


@dataclass(frozen=True)
class LedgerView:
    """The three ledger tables the audit reads, as plain rows."""

    orders: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    positions: list[dict[str, Any]]

    @classmethod
    def read(cls, ledger: str) -> LedgerView:
        """`ledger` is a PostgreSQL DSN (``postgresql://…`` or ``key=value`` form) or a
        SQLite file path."""
        from aegis_actors.store import open_database

        is_pg = ledger.startswith(("postgres://", "postgresql://")) or "dbname=" in ledger
        db = (
            open_database(postgres_dsn=ledger, connect_timeout_s=5)
            if is_pg
            else open_database(sqlite_path=ledger)
        )
        try:
            return cls(
                orders=db.select("orders", order_by="id"),
                fills=db.select("fills", order_by="id"),
                positions=db.select("positions"),
            )
        finally:
            db.close()


@dataclass(frozen=True)
class BrokerOrderView:
    client_order_id: str
    qty: float
    filled_qty: float
    status: str


@dataclass(frozen=True)
class BrokerFillView:
    fill_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: float
    price: float


@dataclass(frozen=True)
class BrokerView:
    """What the broker says: its orders, every fill it made, its positions, and how many
    times each client order id was submitted."""

    orders: dict[str, BrokerOrderView] = field(default_factory=dict)
    fills: dict[str, BrokerFillView] = field(default_factory=dict)
    positions: dict[str, float] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_paper_state(cls, path: str | Path) -> BrokerView:
        """The durable paper broker's file (`broker.paper_state_path`)."""
        state = json.loads(Path(path).read_text())
        book = state["book"]
        orders = {
            r["client_order_id"]: BrokerOrderView(
                r["client_order_id"], float(r["qty"]), float(r["filled_qty"]), str(r["status"])
            )
            for r in book["orders"]
        }
        rows = {f["fill_id"]: f for f in state.get("fills", [])}
        rows.update({f["fill_id"]: f for f in book.get("outbox", [])})
        fills = {
            fid: BrokerFillView(
                fid,
                f["client_order_id"],
                f["symbol"],
                str(f["side"]),
                float(f["qty"]),
                float(f["price"]),
            )
            for fid, f in rows.items()
        }
        positions = {
            s: float(p[0] if isinstance(p, list | tuple) else p["qty"])
            for s, p in book["positions"].items()
        }
        sent = {str(k): int(v) for k, v in state.get("sent", {}).items()}
        return cls(orders, fills, {s: q for s, q in positions.items() if abs(q) > EPS}, sent)


def _f(x: Any) -> float:
    return float(x) if x is not None else 0.0


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=EPS)


def audit(
    ledger: str | LedgerView,
    broker: BrokerView | None = None,
    *,
    now: float,
    write_ahead_deadline_s: float = 2.0,
) -> list[Violation]:
    """Every violation found, in a stable order (empty list: the books are sound).

    `now` is on the ledger's clock (wall seconds live, virtual seconds in a replay); a
    `new` row older than `write_ahead_deadline_s` is one that was never confirmed.
    Without `broker` only the ledger's own consistency is checked.
    """
    view = LedgerView.read(ledger) if isinstance(ledger, str) else ledger
    found: list[Violation] = []
    found += _duplicates(view, broker)
    found += _fill_sums(view)
    found += _positions_follow_fills(view)
    found += _stale_write_ahead(view, now, write_ahead_deadline_s)
    if broker is not None:
        found += _ledger_vs_broker(view, broker)
    found += _exit_paths(view, broker)
    return found


def _duplicates(view: LedgerView, broker: BrokerView | None) -> list[Violation]:
    out = [
        Violation(ViolationKind.DUPLICATE_ORDER, coid, f"{n} ledger rows")
        for coid, n in sorted(Counter(o["client_order_id"] for o in view.orders).items())
        if n > 1
    ]
    out += [
        Violation(ViolationKind.DUPLICATE_ORDER, fid, f"fill id {n} times in the ledger")
        for fid, n in sorted(Counter(f["fill_id"] for f in view.fills).items())
        if n > 1
    ]
    if broker is not None:
        out += [
            Violation(ViolationKind.DUPLICATE_ORDER, coid, f"submitted {n} times to the broker")
            for coid, n in sorted(broker.sent.items())
            if n > 1
        ]
    return out


def _filled_by_order(view: LedgerView) -> dict[str, float]:
    filled: dict[str, float] = defaultdict(float)
    for f in view.fills:
        filled[f["client_order_id"]] += _f(f["qty"])
    return filled


def _fill_sums(view: LedgerView) -> list[Violation]:
    filled = _filled_by_order(view)
    known = {o["client_order_id"] for o in view.orders}
    out: list[Violation] = []
    for o in view.orders:
        coid, got = o["client_order_id"], filled.get(o["client_order_id"], 0.0)
        if o["status"] == "filled" and not _same(got, _f(o["qty"])):
            out.append(
                Violation(
                    ViolationKind.FILL_SUM,
                    coid,
                    f"status filled, qty {_f(o['qty']):g}, fills sum to {got:g}",
                )
            )
        elif not _same(got, _f(o.get("filled_qty"))):
            out.append(
                Violation(
                    ViolationKind.FILL_SUM,
                    coid,
                    f"filled_qty {_f(o.get('filled_qty')):g} ({o['status']}), fills sum to {got:g}",
                )
            )
    for coid in sorted(set(filled) - known):
        out.append(Violation(ViolationKind.FILL_SUM, coid, "fills for an order not in the ledger"))
    return out


def _net_fills(view: LedgerView) -> dict[str, float]:
    net: dict[str, float] = defaultdict(float)
    for f in view.fills:
        net[f["symbol"]] += _f(f["qty"]) * (1.0 if f["side"] == "buy" else -1.0)
    return {s: q for s, q in net.items() if abs(q) > EPS}


def _ledger_positions(view: LedgerView) -> dict[str, float]:
    return {p["symbol"]: _f(p["qty"]) for p in view.positions if abs(_f(p["qty"])) > EPS}


def _positions_follow_fills(view: LedgerView) -> list[Violation]:
    net, held = _net_fills(view), _ledger_positions(view)
    return [
        Violation(
            ViolationKind.POSITION_FILLS,
            s,
            f"position {held.get(s, 0.0):g}, fills net to {net.get(s, 0.0):g}",
        )
        for s in sorted(set(net) | set(held))
        if not _same(net.get(s, 0.0), held.get(s, 0.0))
    ]


def _stale_write_ahead(view: LedgerView, now: float, deadline_s: float) -> list[Violation]:
    return [
        Violation(
            ViolationKind.STALE_NEW,
            o["client_order_id"],
            f"still new {now - _f(o['created_at']):.1f}s after its write-ahead "
            f"(deadline {deadline_s:g}s)",
        )
        for o in view.orders
        if o["status"] == "new" and now - _f(o["created_at"]) > deadline_s
    ]


def _ledger_vs_broker(view: LedgerView, broker: BrokerView) -> list[Violation]:
    lb = ViolationKind.LEDGER_BROKER
    out: list[Violation] = []
    orders = {o["client_order_id"]: o for o in view.orders}
    for coid in sorted(set(broker.sent) - set(orders)):
        out.append(Violation(lb, coid, "sent to the broker with no write-ahead row"))
    for coid, o in orders.items():
        b = broker.orders.get(coid)
        if b is None:
            if o["status"] not in DEAD_STATUSES and o["status"] != "new":
                out.append(Violation(lb, coid, f"{o['status']} in the ledger, unknown to broker"))
            continue
        if o["status"] != b.status:
            out.append(Violation(lb, coid, f"ledger {o['status']}, broker {b.status}"))
        if not _same(_f(o.get("filled_qty")), b.filled_qty):
            out.append(
                Violation(
                    lb,
                    coid,
                    f"ledger filled {_f(o.get('filled_qty')):g}, broker filled {b.filled_qty:g}",
                )
            )
    ledger_fills = {f["fill_id"]: f for f in view.fills}
    for fid in sorted(set(broker.fills) - set(ledger_fills)):
        bf = broker.fills[fid]
        out.append(Violation(lb, fid, f"broker fill of {bf.client_order_id} missing in ledger"))
    for fid in sorted(set(ledger_fills) - set(broker.fills)):
        out.append(Violation(lb, fid, "ledger fill the broker never made"))
    for fid in sorted(set(ledger_fills) & set(broker.fills)):
        lf, bf = ledger_fills[fid], broker.fills[fid]
        if (
            lf["client_order_id"] != bf.client_order_id
            or not _same(_f(lf["qty"]), bf.qty)
            or not _same(_f(lf["price"]), bf.price)
        ):
            out.append(
                Violation(
                    lb,
                    fid,
                    f"ledger {lf['client_order_id']} {_f(lf['qty']):g}@{_f(lf['price']):g}, "
                    f"broker {bf.client_order_id} {bf.qty:g}@{bf.price:g}",
                )
            )
    held = _ledger_positions(view)
    for s in sorted(set(held) | set(broker.positions)):
        if not _same(held.get(s, 0.0), broker.positions.get(s, 0.0)):
            out.append(
                Violation(
                    lb,
                    s,
                    f"position: ledger {held.get(s, 0.0):g}, broker "
                    f"{broker.positions.get(s, 0.0):g}",
                )
            )
    return out


def _exit_paths(view: LedgerView, broker: BrokerView | None) -> list[Violation]:
    """An open position needs a stop to trigger its exit, and an exit the ledger says is
    working must be working at the broker (else the position waits on a dead order)."""
    out: list[Violation] = []
    working_exits: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in view.orders:
        if o.get("intent") == "exit" and o["status"] in OPEN_STATUSES:
            working_exits[o["symbol"]].append(o)
    for p in view.positions:
        symbol, qty = p["symbol"], _f(p["qty"])
        if abs(qty) <= EPS:
            continue
        if p.get("stop_loss") is None:
            out.append(Violation(ViolationKind.NO_EXIT_PATH, symbol, f"open {qty:g}, no stop"))
        for o in working_exits.get(symbol, []):
            coid = o["client_order_id"]
            b = broker.orders.get(coid) if broker is not None else None
            live = b is not None and b.status in ("new", "accepted", "partially_filled")
            if broker is not None and not live:
                out.append(
                    Violation(
                        ViolationKind.NO_EXIT_PATH,
                        symbol,
                        f"open {qty:g}, exiting through {coid} ({o['status']} in the ledger, "
                        f"{b.status if b else 'never'} at the broker)",
                    )
                )
    return out
