"""What a backtest produced, from the ledger and the per-bar equity: the files and figures.

Nothing here carries a run's random ids (event or decision ids), so two runs over the same
data write byte-identical files.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EPS = 1e-9
TRADE_COLUMNS = ("ts", "symbol", "side", "qty", "price", "fee", "intent")


@dataclass(frozen=True)
class Trade:
    ts: float
    symbol: str
    side: str
    qty: float
    price: float
    fee: float
    intent: str


def read_ledger(db_path: Path) -> tuple[list[Trade], dict[str, int]]:
    """The fills in time order, and the decision/order counts, from the SQLite ledger."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT f.ts, f.symbol, f.side, f.qty, f.price, f.fee, COALESCE(o.intent, '') "
            "FROM fills f LEFT JOIN orders o ON o.client_order_id = f.client_order_id "
            "ORDER BY f.ts, f.id"
        ).fetchall()
        counts = {
            "decisions": con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0],
            "orders": con.execute("SELECT COUNT(*) FROM orders").fetchone()[0],
        }
    finally:
        con.close()
    trades = [
        Trade(float(r[0]), r[1], r[2], float(r[3]), float(r[4]), float(r[5] or 0), r[6])
        for r in rows
    ]
    return trades, counts


def closed_positions(trades: list[Trade]) -> list[float]:
    """Net PnL (fees included) of each round trip from flat back to flat, per symbol."""
    qty: dict[str, float] = {}
    cash: dict[str, float] = {}
    out: list[float] = []
    for t in trades:
        sign = 1.0 if t.side == "buy" else -1.0
        qty[t.symbol] = qty.get(t.symbol, 0.0) + sign * t.qty
        cash[t.symbol] = cash.get(t.symbol, 0.0) - sign * t.qty * t.price - t.fee
        if abs(qty[t.symbol]) < EPS:
            out.append(cash.pop(t.symbol))
            qty[t.symbol] = 0.0
    return out


def max_drawdown_pct(equity: list[float]) -> float:
    peak, worst = 0.0, 0.0
    for e in equity:
        peak = max(peak, e)
        if peak > 0:
            worst = max(worst, (peak - e) / peak)
    return worst * 100.0


def summarize(
    *,
    bars: int,
    bad_rows: dict[str, int],
    symbols: list[str],
    events: int,
    counts: dict[str, int],
    trades: list[Trade],
    equity: list[tuple[float, float]],
    capital: float,
    outcomes: dict[str, int],
) -> dict[str, Any]:
    final = equity[-1][1] if equity else capital
    closed = closed_positions(trades)
    wins = sum(1 for pnl in closed if pnl > 0)
    return {
        "symbols": symbols,
        "bars": bars,
        "bad_rows": dict(sorted(bad_rows.items())),
        "events": events,
        "decisions": counts["decisions"],
        "orders": counts["orders"],
        "fills": len(trades),
        "capital": round(capital, 2),
        "final_equity": round(final, 2),
        "return_pct": round((final / capital - 1.0) * 100.0, 4),
        "max_drawdown_pct": round(max_drawdown_pct([e for _, e in equity]), 4),
        "closed_positions": len(closed),
        "win_rate_pct": round(wins / len(closed) * 100.0, 2) if closed else None,
        "outcomes": dict(sorted(outcomes.items())),
    }


def write_outputs(
    out: Path, trades: list[Trade], equity: list[tuple[float, float]], report: dict[str, Any]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "trades.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TRADE_COLUMNS)
        for t in trades:
            w.writerow(
                [
                    f"{t.ts:.3f}",
                    t.symbol,
                    t.side,
                    f"{t.qty:g}",
                    f"{t.price:.6f}",
                    f"{t.fee:.6f}",
                    t.intent,
                ]
            )
    with (out / "equity.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("ts", "equity"))
        for ts, e in equity:
            w.writerow([f"{ts:.3f}", f"{e:.2f}"])
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def summary_text(r: dict[str, Any]) -> str:
    win = "n/a" if r["win_rate_pct"] is None else f"{r['win_rate_pct']:.1f}%"
    bad = sum(r["bad_rows"].values())
    outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items()) or "none"
    return "\n".join(
        [
            f"backtest: {', '.join(r['symbols'])}: {r['bars']} bars ({bad} bad rows skipped)",
            f"  events {r['events']}  decisions {r['decisions']}  orders {r['orders']}  "
            f"fills {r['fills']}",
            f"  equity {r['capital']:,.2f} -> {r['final_equity']:,.2f}  "
            f"return {r['return_pct']:+.2f}%  max drawdown {r['max_drawdown_pct']:.2f}%",
            f"  closed positions {r['closed_positions']}  win rate {win}",
            f"  outcomes: {outcomes}",
        ]
    )
