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
    run_latency: list[dict[str, Any]] = field(default_factory=list)  # watchdog histograms
    extra: dict[str, Any] = field(default_factory=dict)

    def in_day(self, ts: Any) -> bool:
        return isinstance(ts, int | float) and self.start <= ts < self.end


JSON_COLUMNS = ("analysis", "decision", "latency_ms", "tokens", "models")  # what the report reads


def decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A decision with its JSON columns parsed once (the report reads them many times)."""
    for col in JSON_COLUMNS:
        if col in row:
            row[col] = as_json(row[col])
    return row


def load(db: Database, day: date) -> DayLedger:
    start, end = day_bounds(day)

    def within(table: str, col: str) -> list[dict[str, Any]]:
        return db.select_between(table, col, start, end, order_by=f"{col}, id")

    orders = {o["client_order_id"]: o for o in db.select("orders")}
    fills = [f for f in db.select("fills", order_by="ts, id") if f.get("ts") is not None]
    return DayLedger(
        day=day,
        start=start,
        end=end,
        fills=[f for f in fills if f["ts"] < end],
        orders=orders,
        day_orders=within("orders", "created_at"),
        open_orders=[o for o in orders.values() if o.get("status") in OPEN_ORDER_STATUSES],
        positions=[p for p in db.select("positions") if float(p.get("qty") or 0) != 0],
        decisions=[decoded(d) for d in within("decisions", "created_at")],
        alerts=within("alerts", "ts"),
        mode_changes=within("mode_changes", "ts"),
        posture_changes=within("posture_changes", "ts"),
        kind=db.kind,
        run_latency=[
            as_json(r.get("value"))
            for r in db.select("kv")
            if str(r.get("key", "")).startswith(f"latency:{day.isoformat()}:")
        ],
    )
