"""kill -9 of a real `python -m aegis_actors` run on PostgreSQL while it is placing orders,
then a restart: the ledger matches the broker, no client order id was sent twice, no fill
is missing.

The paper broker lives in the process, so it would die with it; the run keeps its book in
a file (`broker.paper_state_path`, written atomically after every change) so the restarted
process meets the same "broker" a real one would find. The audit reads that file and the
PostgreSQL ledger directly, as an operator would.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from conftest import wait_until

from aegis_actors.store import open_database

ROOT = Path(__file__).resolve().parents[1]


def run_env(tmp: Path, dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        AEGIS_POSTGRES_DSN=dsn,
        AEGIS_BROKER__PAPER_STATE_PATH=str(tmp / "var" / "paper.json"),
        AEGIS_STORE__SPOOL_PATH=str(tmp / "var" / "spool.db"),
        AEGIS_RUN__LOG_DIR=str(tmp / "logs"),
        AEGIS_FEED__TICK_INTERVAL_S="0.02",
        AEGIS_FEED__VOLATILITY="0.01",
        AEGIS_DASHBOARD__PORT="0",
    )
    return env


def order_count(dsn: str) -> int:
    try:
        with psycopg2.connect(dsn, connect_timeout=2) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM orders")
            row = cur.fetchone()
            return int(row[0]) if row else 0
    except psycopg2.Error:  # not migrated yet
        return 0


def audit(dsn: str, state_path: Path) -> dict[str, Any]:
    """Compare the broker's book with the ledger; returns a few totals for the asserts."""
    state = json.loads(state_path.read_text())
    book = state["book"]
    at_broker = {r["client_order_id"]: r for r in book["orders"]}
    db = open_database(postgres_dsn=dsn)
    try:
        orders = {r["client_order_id"]: r for r in db.select("orders")}
        fills = db.select("fills")
        positions = {r["symbol"]: r["qty"] for r in db.select("positions")}
    finally:
        db.close()
    # Write-ahead: the broker never saw an order the ledger did not have first.
    assert set(state["sent"]) <= set(orders), set(state["sent"]) - set(orders)
    # Never sent twice.
    twice = {c: n for c, n in state["sent"].items() if n != 1}
    assert not twice, f"client order ids sent more than once: {twice}"
    # No fill missing, none invented.
    broker_fills = {f["fill_id"] for f in state["fills"]}
    ledger_fills = {f["fill_id"] for f in fills}
    assert broker_fills == ledger_fills, broker_fills ^ ledger_fills
    filled: dict[str, float] = {}
    for f in fills:
        filled[f["client_order_id"]] = filled.get(f["client_order_id"], 0.0) + f["qty"]
    for coid, row in orders.items():
        b = at_broker.get(coid)
        if b is None:  # never reached the broker (or the broker rejected it)
            assert row["status"] in ("cancelled", "rejected", "error"), row
            assert coid not in filled
            continue
        assert row["status"] == b["status"], (row, b)
        assert math.isclose(row["filled_qty"] or 0.0, b["filled_qty"]), (row, b)
        assert math.isclose(filled.get(coid, 0.0), b["filled_qty"]), (coid, b)
    held = {s: q for s, (q, _avg) in book["positions"].items()}
    assert positions == held, (positions, held)
    never_sent = [c for c, r in orders.items() if c not in at_broker]
    return {"orders": len(orders), "fills": len(fills), "never_sent": len(never_sent)}


@pytest.mark.integration
def test_kill_9_while_trading_then_restart_reconciles(tmp_path: Path, pg_dsn: str) -> None:
    env = run_env(tmp_path, pg_dsn)
    cmd = [sys.executable, "-m", "aegis_actors", "--for", "60"]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: order_count(pg_dsn) >= 25, timeout=40, what="orders placed")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    before = order_count(pg_dsn)

    second = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "--for", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reconcile:" in second.stderr
    totals = audit(pg_dsn, tmp_path / "var" / "paper.json")
    assert totals["orders"] >= before and totals["fills"] > 0
