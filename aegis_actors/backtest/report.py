"""What a backtest produced, from the ledger and the per-bar equity: the files and figures.

Nothing here carries a run's random ids (event or decision ids), so two runs over the same
data write byte-identical files.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EPS = 1e-9
TRADE_COLUMNS = ("ts", "symbol", "side", "qty", "price", "fee", "intent")
YEAR_S = 365.25 * 86400.0
METRIC_KEYS = (
    "return_pct",
    "cagr_pct",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown_pct",
    "max_drawdown_bars",
    "max_drawdown_days",
    "profit_factor",
    "trades",
    "win_rate_pct",
    "avg_trade",
    "exposure_pct",
    "final_equity",
)


@dataclass(frozen=True)
class Trade:
    ts: float
    symbol: str
    side: str
    qty: float
    price: float
    fee: float
    intent: str


def read_ledger(db_path: Path) -> tuple[list[Trade], dict[str, Any]]:
    """The fills in time order, and the ledger's counts and accuracy inputs."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT f.ts, f.symbol, f.side, f.qty, f.price, f.fee, COALESCE(o.intent, '') "
            "FROM fills f LEFT JOIN orders o ON o.client_order_id = f.client_order_id "
            "ORDER BY f.ts, f.id"
        ).fetchall()
        counts: dict[str, Any] = {
            "decisions": con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0],
            "orders": con.execute("SELECT COUNT(*) FROM orders").fetchone()[0],
            "order_status": dict(
                con.execute("SELECT status, COUNT(*) FROM orders GROUP BY status").fetchall()
            ),
            "calls": [
                (sym, float(ts), json.loads(a or "{}").get("direction", "flat"), bool(v))
                for sym, ts, a, v in con.execute(
                    "SELECT symbol, created_at, analysis, vetoed FROM decisions ORDER BY id"
                )
            ],
            "postures": [
                (float(ts), new)
                for ts, new in con.execute("SELECT ts, new FROM posture_changes ORDER BY id")
            ],
            "llm": _llm_usage(con),
        }
    finally:
        con.close()
    trades = [
        Trade(float(r[0]), r[1], r[2], float(r[3]), float(r[4]), float(r[5] or 0), r[6])
        for r in rows
    ]
    return trades, counts


def _llm_usage(con: sqlite3.Connection) -> dict[str, float]:
    tokens = cost = 0.0
    for tok, usd in con.execute("SELECT tokens, cost_usd FROM decisions"):
        cost += float(usd or 0.0)
        try:
            data = json.loads(tok) if tok else {}
        except ValueError:
            continue
        values = data.values() if isinstance(data, dict) else []
        tokens += sum(float(v) for v in values if isinstance(v, int | float))
    return {"tokens": tokens, "cost_usd": round(cost, 6)}


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


def drawdown(equity: list[float]) -> tuple[float, int, list[float]]:
    """Max drawdown (%), its longest duration (bars under a previous peak), the series."""
    peak, worst, run, longest = 0.0, 0.0, 0, 0
    series: list[float] = []
    for e in equity:
        if e >= peak:
            peak, run = e, 0
        else:
            run += 1
            longest = max(longest, run)
        dd = (peak - e) / peak if peak > 0 else 0.0
        series.append(-dd * 100.0)
        worst = max(worst, dd)
    return worst * 100.0, longest, series


def _longest_underwater_s(equity: list[tuple[float, float]]) -> float:
    """The longest time from a peak until equity is back at it (or the run ends)."""
    peak, peak_ts, longest = 0.0, 0.0, 0.0
    under = False
    for ts, e in equity:
        if e >= peak:
            if under:
                longest = max(longest, ts - peak_ts)
            peak, peak_ts, under = e, ts, False
        else:
            under = True
    if under:
        longest = max(longest, equity[-1][0] - peak_ts)
    return longest


def max_drawdown_pct(equity: list[float]) -> float:
    return drawdown(equity)[0]


def _exposure(trades: list[Trade], times: list[float]) -> float:
    """Share of bars (%) that ended with any position open."""
    if not times:
        return 0.0
    qty: dict[str, float] = {}
    j, exposed = 0, 0
    for ts in times:
        while j < len(trades) and trades[j].ts <= ts:
            t = trades[j]
            qty[t.symbol] = qty.get(t.symbol, 0.0) + (t.qty if t.side == "buy" else -t.qty)
            j += 1
        exposed += any(abs(q) > EPS for q in qty.values())
    return exposed / len(times) * 100.0


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 or not math.isfinite(num / den) else num / den


def performance(
    equity: list[tuple[float, float]], capital: float, trades: list[Trade]
) -> dict[str, Any]:
    """Return, CAGR, Sharpe, Sortino (per-bar returns, annualised by bars per year seen in
    the data, risk-free 0), drawdown and its duration, exposure, and the trade figures."""
    values = [e for _, e in equity]
    final = values[-1] if values else capital
    rets = [b / a - 1.0 for a, b in zip([capital, *values], values, strict=False) if a > 0]
    years = (equity[-1][0] - equity[0][0]) / YEAR_S if len(equity) > 1 else 0.0
    per_year = len(rets) / years if years > 0 else 0.0
    mean = statistics.fmean(rets) if rets else 0.0
    sd = statistics.pstdev(rets) if len(rets) > 1 else 0.0
    down = math.sqrt(statistics.fmean([min(r, 0.0) ** 2 for r in rets])) if rets else 0.0
    growth = final / capital if capital > 0 else 0.0
    cagr = (growth ** (1.0 / years) - 1.0) * 100.0 if years > 0 and growth > 0 else None
    dd, dd_bars, _ = drawdown(values)
    closed = closed_positions(trades)
    wins = [p for p in closed if p > 0]
    losses = [p for p in closed if p <= 0]
    sharpe = _ratio(mean, sd)
    sortino = _ratio(mean, down)
    root = math.sqrt(per_year)
    return {
        "final_equity": round(final, 2),
        "return_pct": round((growth - 1.0) * 100.0, 4),
        "cagr_pct": None if cagr is None else round(cagr, 4),
        "sharpe": None if sharpe is None else round(sharpe * root, 4),
        "sortino": None if sortino is None else round(sortino * root, 4),
        "calmar": None if cagr is None or dd == 0 else round(cagr / dd, 4),
        "max_drawdown_pct": round(dd, 4),
        "max_drawdown_bars": dd_bars,
        "max_drawdown_days": round(_longest_underwater_s(equity) / 86400.0, 3),
        "exposure_pct": round(_exposure(trades, [t for t, _ in equity]), 2),
        "trades": len(closed),
        "win_rate_pct": round(len(wins) / len(closed) * 100.0, 2) if closed else None,
        "avg_trade": round(statistics.fmean(closed), 4) if closed else None,
        "profit_factor": (
            None
            if not closed
            else None
            if not losses or sum(losses) == 0
            else round(sum(wins) / -sum(losses), 4)
        ),
    }


def accuracy(
    calls: list[tuple[str, float, str, bool]],
    closes: dict[str, list[tuple[float, float]]],
    order_status: dict[str, int],
) -> dict[str, Any]:
    """SPEC 5.3: analysis prediction accuracy (the next bar moved the predicted way), veto
    hit rate (a vetoed call whose next bar went against it: a loss avoided), execution
    success (orders filled of orders placed)."""
    index = {s: {t: i for i, (t, _) in enumerate(rows)} for s, rows in closes.items()}
    right = called = vetoed = hits = 0
    for symbol, ts, direction, veto in calls:
        if direction not in ("up", "down"):
            continue
        rows, i = closes.get(symbol, []), index.get(symbol, {}).get(ts)
        if i is None or i + 1 >= len(rows):
            continue
        move = rows[i + 1][1] - rows[i][1]
        good = move > 0 if direction == "up" else move < 0
        called += 1
        right += good
        if veto:
            vetoed += 1
            hits += not good
    placed = sum(order_status.values())
    filled = order_status.get("filled", 0)
    return {
        "prediction_accuracy_pct": round(right / called * 100.0, 2) if called else None,
        "predictions": called,
        "veto_hit_rate_pct": round(hits / vetoed * 100.0, 2) if vetoed else None,
        "vetoes_judged": vetoed,
        "execution_success_pct": round(filled / placed * 100.0, 2) if placed else None,
    }


def posture_shares(
    postures: list[tuple[float, str]], times: list[float], first: str
) -> dict[str, float]:
    """Share of bars (%) spent in each posture."""
    counts: dict[str, int] = {}
    j, current = 0, first
    for ts in times:
        while j < len(postures) and postures[j][0] <= ts:
            current = postures[j][1]
            j += 1
        counts[current] = counts.get(current, 0) + 1
    total = max(1, len(times))
    return {k: round(v / total * 100.0, 2) for k, v in sorted(counts.items())}


def summarize(
    *,
    bars: int,
    bad_rows: dict[str, int],
    symbols: list[str],
    events: int,
    counts: dict[str, Any],
    trades: list[Trade],
    equity: list[tuple[float, float]],
    capital: float,
    outcomes: dict[str, int],
    notes: dict[str, int] | None = None,
    strategy: dict[str, Any] | None = None,
    iso: bool = False,
    closes: dict[str, list[tuple[float, float]]] | None = None,
    first_posture: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    perf = performance(equity, capital, trades)
    times = [t for t, _ in equity]
    report: dict[str, Any] = {
        "symbols": symbols,
        "bars": bars,
        "from": fmt_ts(times[0], iso) if times else None,
        "to": fmt_ts(times[-1], iso) if times else None,
        "bad_rows": dict(sorted(bad_rows.items())),
        "data_notes": dict(sorted((notes or {}).items())),
        "strategy": strategy or {"name": "aegis"},
        "events": events,
        "decisions": counts["decisions"],
        "orders": counts["orders"],
        "fills": len(trades),
        "capital": round(capital, 2),
        **perf,
        "closed_positions": perf["trades"],
        "outcomes": dict(sorted(outcomes.items())),
        "accuracy": accuracy(counts.get("calls", []), closes or {}, counts.get("order_status", {})),
        "posture_time_pct": posture_shares(counts.get("postures", []), times, first_posture),
    }
    if extra:
        report.update(extra)
    return report


def metrics(report: dict[str, Any]) -> dict[str, float | int | None]:
    """The headline figures of a report (the API's `BacktestResult.metrics`)."""
    return {k: report.get(k) for k in METRIC_KEYS}


def fmt_ts(ts: float, iso: bool) -> str:
    if not iso:
        return f"{ts:.3f}"
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def write_outputs(
    out: Path,
    trades: list[Trade],
    equity: list[tuple[float, float]],
    report: dict[str, Any],
    *,
    iso: bool = False,
    html: bool = False,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "trades.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TRADE_COLUMNS)
        for t in trades:
            w.writerow(
                [
                    fmt_ts(t.ts, iso),
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
            w.writerow([fmt_ts(ts, iso), f"{e:.2f}"])
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if html:
        from aegis_actors.backtest.html import render

        (out / "report.html").write_text(render(report, trades, equity, iso), encoding="utf-8")


def _fmt(v: Any, spec: str, suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{suffix}"


def summary_text(r: dict[str, Any]) -> str:
    bad = sum(r["bad_rows"].values())
    outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items()) or "none"
    s = r.get("strategy", {})
    params = " ".join(
        f"{k}={v}" if isinstance(v, str | bool) else f"{k}={v:g}"
        for k, v in s.get("params", {}).items()
    )
    return "\n".join(
        [
            f"backtest: {', '.join(r['symbols'])}: {r['bars']} bars ({bad} bad rows skipped)"
            f"  {r.get('from')} .. {r.get('to')}",
            f"  strategy {s.get('name', 'aegis')} {params}  exits {s.get('exits', 'posture')}"
            f"  veto {'on' if s.get('veto', True) else 'off'}",
            f"  events {r['events']}  decisions {r['decisions']}  orders {r['orders']}  "
            f"fills {r['fills']}",
            f"  equity {r['capital']:,.2f} -> {r['final_equity']:,.2f}  "
            f"return {r['return_pct']:+.2f}%  CAGR {_fmt(r['cagr_pct'], '+.2f', '%')}  "
            f"max drawdown {r['max_drawdown_pct']:.2f}%",
            f"  Sharpe {_fmt(r['sharpe'], '.2f')}  Sortino {_fmt(r['sortino'], '.2f')}  "
            f"profit factor {_fmt(r['profit_factor'], '.2f')}  exposure {r['exposure_pct']:.1f}%",
            f"  closed positions {r['closed_positions']}  win rate "
            f"{_fmt(r['win_rate_pct'], '.1f', '%')}",
            f"  outcomes: {outcomes}",
        ]
        + (
            [
                f"  llm: {r['llm']['calls']} calls, {r['llm']['cache_hits']} cache hits, "
                f"{r['llm']['tokens']} tokens, ${r['llm']['cost_usd']:.4f}"
            ]
            if r.get("llm")
            else []
        )
    )
