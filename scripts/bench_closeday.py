"""close-day's report on a full day's ledger, beside a raw read of the same rows.

    python scripts/bench_closeday.py [--decisions N] [--fills N]

A SPEC 5.2 day (10,000 decisions, default 2,000 orders and fills over 50 symbols) in SQLite:
the raw baseline is sqlite3 reading every row of the tables the report reads (no parsing);
the figure is `ledger.load` + `report.build` + the HTML render, and the JSON it writes.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aegis_actors.closeday import html, ledger, report  # noqa: E402
from aegis_actors.settings import load_settings  # noqa: E402
from aegis_actors.store import open_database  # noqa: E402


def build_ledger(path: Path, decisions: int, fills: int, symbols: int, day_start: float) -> None:
    open_database(sqlite_path=str(path)).close()  # schema
    rng = random.Random(7)
    names = [f"S{i:03d}" for i in range(symbols)]
    price = {s: 100.0 for s in names}
    held = {s: 0 for s in names}
    con = sqlite3.connect(path)
    dec_rows, order_rows, fill_rows = [], [], []
    for i in range(decisions):
        ts = day_start + 3600 * 13.5 + i * (6.5 * 3600 / decisions)
        s = names[i % symbols]
        price[s] *= 1 + rng.gauss(0, 0.001)
        dec_rows.append(
            (
                f"d{i}",
                f"ev{i}",
                s,
                json.dumps({"direction": rng.choice(["up", "down", "flat"]), "confidence": 0.6}),
                json.dumps({"approve": True}),
                json.dumps({"reference_price": price[s], "action": "buy"}),
                int(rng.random() < 0.2),
                json.dumps({"detect_to_analysis": 3.0, "analysis": 900.0, "verification": 700.0}),
                json.dumps({"analyst": {"input": 300, "output": 80}}),
                0.0004,
                ts,
            )
        )
        if i % max(1, decisions // fills) == 0 and len(fill_rows) < fills:
            side = "sell" if held[s] > 0 else "buy"
            held[s] += 10 if side == "buy" else -10
            coid = f"o{i}"
            order_rows.append(
                (
                    coid,
                    f"d{i}",
                    s,
                    side,
                    10.0,
                    "limit",
                    price[s],
                    "filled",
                    "guerrilla",
                    "entry",
                    ts,
                )
            )
            fill_rows.append((f"f{i}", coid, s, side, 10.0, price[s], 1.0, ts + 0.05))
    con.executemany(
        "INSERT INTO decisions (decision_id, event_id, symbol, analysis, verdict, decision, "
        "vetoed, latency_ms, tokens, cost_usd, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        dec_rows,
    )
    con.executemany(
        "INSERT INTO orders (client_order_id, decision_id, symbol, side, qty, order_type, "
        "limit_price, status, posture, intent, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        order_rows,
    )
    con.executemany(
        "INSERT INTO fills (fill_id, client_order_id, symbol, side, qty, price, fee, ts) "
        "VALUES (?,?,?,?,?,?,?,?)",
        fill_rows,
    )
    con.commit()
    con.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--decisions", type=int, default=10_000)
    p.add_argument("--fills", type=int, default=2_000)
    p.add_argument("--symbols", type=int, default=50)
    a = p.parse_args()
    print(
        f"== closeday: the daily report on a day of {a.decisions:,} decisions and {a.fills:,} "
        "fills (SQLite) vs a raw read of the same rows"
    )
    day = datetime(2026, 3, 2, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.db"
        build_ledger(path, a.decisions, a.fills, a.symbols, day.timestamp())
        raw_times, parsed_times, rep_times = [], [], []
        for _ in range(3):
            t0 = time.perf_counter()
            con = sqlite3.connect(path)
            rows = {
                table: con.execute(f"SELECT * FROM {table}").fetchall()
                for table in ("orders", "fills", "positions", "decisions", "alerts")
            }
            con.close()
            raw_times.append(time.perf_counter() - t0)
            for row in rows["decisions"]:  # the JSON columns the report needs, parsed once
                for value in (row[i] for i in (4, 6, 10, 13, 14)):
                    if isinstance(value, str) and value[:1] in "{[":
                        json.loads(value)
            parsed_times.append(time.perf_counter() - t0)
            s = load_settings(None, store={"sqlite_path": str(path)})
            t0 = time.perf_counter()
            db = open_database(sqlite_path=str(path))
            r = report.build(ledger.load(db, day.date()), s)
            page = html.render(r)
            doc = json.dumps(r, sort_keys=True)
            db.close()
            rep_times.append(time.perf_counter() - t0)
        raw, parsed, rep = min(raw_times), min(parsed_times), min(rep_times)
        print(
            f"raw sqlite3 read of every row: {raw * 1000:,.1f} ms, with its JSON columns "
            f"parsed: {parsed * 1000:,.1f} ms; load + report + HTML: {rep * 1000:,.1f} ms "
            f"(ratio {rep / parsed:.1f}x the parsed read); JSON {len(doc) / 1e3:,.0f} kB, "
            f"HTML {len(page) / 1e3:,.0f} kB; {r['trades']} trades, "
            f"{len(r['equity_curve'])} equity points"
        )


if __name__ == "__main__":
    main()
