"""Issue 11, defect 1: fills must never be dropped across restarts.

Each run of the in-memory paper broker used to restart its ids at `paper-1-1`, so on
PostgreSQL the second run's fills collided with the first run's ids and the store ignored
them: orders `filled` with no fill rows. Fill ids are now unique forever, and a different
row under a key the ledger already holds is an error with an alert, never ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import drive, settle, wait_until

from aegis_actors.messages import (
    Fill,
    GetStatus,
    Order,
    OrderType,
    RecordFill,
    Side,
    WriteAhead,
    WriteAheadAck,
    WriteOrder,
)
from aegis_actors.runtime import STORE, WATCHDOG
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock

FAST = {"feed": {"symbols": ["AAPL", "MSFT", "NVDA"], "volatility": 0.01, "tick_interval_s": 0.25}}


def fill(fill_id: str, qty: float = 10.0, price: float = 100.0) -> Fill:
    return Fill(
        fill_id=fill_id,
        client_order_id="ae-x",
        symbol="AAPL",
        side=Side.BUY,
        qty=qty,
        price=price,
        fee=1.0,
        ts=1.0,
    )


def order(coid: str, qty: float) -> Order:
    return Order(
        client_order_id=coid,
        decision_id="d-1",
        event_id="e-1",
        symbol="AAPL",
        side=Side.BUY,
        qty=qty,
        order_type=OrderType.MARKET,
        created_at=1.0,
    )


@pytest.mark.integration
def test_ledger_conflicts_are_errors_with_an_alert_and_replays_stay_idempotent(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str
) -> None:
    app = aegis_factory(
        store={"postgres_dsn": pg_dsn, "spool_path": str(aegis_env / "var" / "spool.db")},
        feed={"symbols": ["SPY"]},
    )
    d = app.rt.directory
    d.tell(STORE, RecordFill(fill=fill("f-1")))
    d.tell(STORE, RecordFill(fill=fill("f-1")))  # the same fill replayed: idempotent
    settle()
    assert d.ask(STORE, GetStatus(), 5.0)["conflicts"] == 0
    d.tell(STORE, RecordFill(fill=fill("f-1", qty=5.0, price=101.0)))  # another fill, same id
    settle()
    assert d.ask(STORE, WriteOrder(order=order("ae-1", 10.0)), 5.0) == WriteAheadAck(
        status=WriteAhead.NEW
    )
    again = d.ask(STORE, WriteOrder(order=order("ae-1", 10.0)), 5.0)
    assert again == WriteAheadAck(status=WriteAhead.DUPLICATE)
    answer = d.ask(STORE, WriteOrder(order=order("ae-1", 20.0)), 5.0)
    assert answer.status is WriteAhead.CONFLICT and "qty" in answer.detail
    settle()

    db = open_database(postgres_dsn=pg_dsn)
    fills = db.select("fills")
    orders = db.select("orders")
    db.close()
    assert [(f["fill_id"], f["qty"]) for f in fills] == [("f-1", 10.0)]
    assert [(o["client_order_id"], o["qty"]) for o in orders] == [("ae-1", 10.0)]
    assert d.ask(STORE, GetStatus(), 5.0)["conflicts"] == 2
    assert app.rt.metrics.errors.labels("ledger_conflict")._value.get() == 2
    alerts = wait_until(
        lambda: [
            a
            for a in d.ask(WATCHDOG, GetStatus(), 5.0)["alerts"]
            if a.get("kind") == "ledger_conflict"
        ],
        what="conflict alerts",
    )
    assert "f-1" in alerts[0]["message"]


@pytest.mark.integration
def test_restarted_in_memory_paper_runs_lose_no_fill(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    """Defect 1 as a user met it: two runs on one PostgreSQL ledger, each with a fresh
    in-memory paper book; every filled order keeps its fills and no fill id repeats."""
    settings = {
        "store": {"postgres_dsn": pg_dsn, "spool_path": str(aegis_env / "var" / "spool.db")},
        "broker": {"paper_state_path": ""},
        **FAST,
    }
    for _run in range(2):
        app = aegis_factory(**settings)
        drive(vclock, 20.0)
        app.stop("next run")

    db = open_database(postgres_dsn=pg_dsn)
    orders = db.select("orders")
    fills = db.select("fills")
    db.close()
    assert orders and len(fills) >= 4
    filled_by: dict[str, float] = {}
    for f in fills:
        filled_by[f["client_order_id"]] = filled_by.get(f["client_order_id"], 0.0) + f["qty"]
    for o in orders:
        if o["status"] == "filled":
            assert filled_by.get(o["client_order_id"], 0.0) == pytest.approx(o["qty"]), o
    assert app.rt.metrics.errors.labels("ledger_conflict")._value.get() == 0


def test_rest_broker_fill_ids_are_unique_across_a_restart_and_later_fills_are_seen() -> None:
    """A partially filled order working at the venue across a restart: the new process
    follows its later fills, and their ids never repeat the first process's."""
    from aegis_actors.brokers import BrokerOrder, OrderType
    from aegis_actors.brokers.alpaca import AlpacaBroker
    from aegis_actors.brokers.alpaca_sim import AlpacaSim

    sim = AlpacaSim(fill_fraction=0.5).start()
    try:
        opts: dict = {"timeout_s": 0.5, "retries": 1, "retry_backoff_s": 0.0, "poll_every_s": 0.0}
        first = AlpacaBroker(sim.url, sim.key_id, sim.secret_key, **opts)
        sim.set_price("AAPL", 100.0)
        first.submit(BrokerOrder("c1", "AAPL", Side.BUY, 10.0, OrderType.LIMIT, 100.0))
        before = first.poll_fills()
        assert [f.qty for f in before] == [5.0]
        second = AlpacaBroker(sim.url, sim.key_id, sim.secret_key, **opts)  # the restart
        at = second.order("c1")  # reconciliation asks about it
        assert at is not None and at.filled_qty == 5.0
        sim.set_price("AAPL", 99.0)
        after = second.poll_fills()
        assert [f.qty for f in after] == [5.0]
        assert {f.fill_id for f in before}.isdisjoint({f.fill_id for f in after})
    finally:
        sim.stop()


@pytest.mark.integration
def test_issue_repro_kill_9_then_restart_with_default_settings(tmp_path: Path, pg_dsn: str) -> None:
    """The issue's own repro, default broker settings: run on PostgreSQL, kill -9, run
    again in the same folder; no `filled` order is left without its fills."""
    import os
    import signal
    import subprocess
    import sys

    import psycopg2

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env.update(
        PYTHONPATH=str(root),
        AEGIS_POSTGRES_DSN=pg_dsn,
        AEGIS_FEED__TICK_INTERVAL_S="0.02",
        AEGIS_FEED__VOLATILITY="0.01",
        AEGIS_DASHBOARD__PORT="0",
    )

    def count(sql: str) -> int:
        try:
            with psycopg2.connect(pg_dsn, connect_timeout=2) as conn, conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
                return int(row[0]) if row else 0
        except psycopg2.Error:
            return 0

    cmd = [sys.executable, "-m", "aegis_actors", "--for", "60"]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: count("SELECT COUNT(*) FROM fills") >= 10, timeout=40, what="fills")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    second = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "--for", "4"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert (tmp_path / "var" / "paper.json").exists()  # the paper book is durable by default
    orphans = count(
        "SELECT COUNT(*) FROM orders o WHERE status = 'filled' AND NOT EXISTS "
        "(SELECT 1 FROM fills f WHERE f.client_order_id = o.client_order_id)"
    )
    assert orphans == 0
    short = count(
        "SELECT COUNT(*) FROM orders o WHERE status = 'filled' AND o.qty - 1e-9 > "
        "(SELECT COALESCE(SUM(f.qty), 0) FROM fills f WHERE f.client_order_id = o.client_order_id)"
    )
    assert short == 0
