"""The day as the ledger recorded it: rows read once from the durable store.

The day is a UTC calendar day. Realised P&L needs each position's cost from earlier days,
so fills are read in full up to the day's end; everything else only for the day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aegis_actors.store.base import Database

OPEN_ORDER_STATUSES = ("new", "sent", "accepted", "partially_filled", "unknown")


def day_bounds(day: date) -> tuple[float, float]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def as_json(text: Any) -> Any:
    """A JSON column's value (text on both backends), {} when empty or unreadable."""
    if isinstance(text, dict | list):
        return text
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return {}


@dataclass
class DayLedger:
    day: date
    start: float
    end: float
    fills: list[dict[str, Any]]  # every fill up to the day's end, by time
    orders: dict[str, dict[str, Any]]  # client order id -> order (those the fills name too)
    day_orders: list[dict[str, Any]]  # orders created during the day
    open_orders: list[dict[str, Any]]  # orders the ledger still holds open, whatever day
    positions: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    mode_changes: list[dict[str, Any]]
    posture_changes: list[dict[str, Any]]
    kind: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def in_day(self, ts: Any) -> bool:
        return isinstance(ts, int | float) and self.start <= ts < self.end


def load(db: Database, day: date) -> DayLedger:
    start, end = day_bounds(day)

    def within(rows: list[dict[str, Any]], col: str) -> list[dict[str, Any]]:
        return sorted(
            (r for r in rows if isinstance(r.get(col), int | float) and start <= r[col] < end),
            key=lambda r: (r[col], r.get("id") or 0),
        )

    orders = {o["client_order_id"]: o for o in db.select("orders")}
    fills = sorted(
        (f for f in db.select("fills") if isinstance(f.get("ts"), int | float) and f["ts"] < end),
        key=lambda f: (f["ts"], f.get("id") or 0),
    )
    return DayLedger(
        day=day,
        start=start,
        end=end,
        fills=fills,
        orders=orders,
        day_orders=within(list(orders.values()), "created_at"),
        open_orders=[o for o in orders.values() if o.get("status") in OPEN_ORDER_STATUSES],
        positions=[p for p in db.select("positions") if float(p.get("qty") or 0) != 0],
        decisions=within(db.select("decisions"), "created_at"),
        alerts=within(db.select("alerts"), "ts"),
        mode_changes=within(db.select("mode_changes"), "ts"),
        posture_changes=within(db.select("posture_changes"), "ts"),
        kind=db.kind,
    )
