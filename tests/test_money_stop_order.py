"""Issue 11, defect 5 (second half): nothing enters and no order leaves once "stopping"
is logged. The gateway is the last child to start and so the first to stop, and the
execution core refuses every order once the run is stopping."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from conftest import wait_until

from aegis_actors.clock import WallClock
from aegis_actors.messages import Outcome
from aegis_actors.runtime import GATEWAY, Runtime
from aegis_actors.settings import Settings
from aegis_actors.tree import build, make_broker
from supervisors import Directory
from tests.execution_harness import Harness

ROOT = Path(__file__).resolve().parents[1]


def test_the_gateway_starts_last_so_it_stops_first() -> None:
    for redis, port in (("", 0), ("redis://127.0.0.1:6379/15", 8765)):
        s = Settings(store={"redis_url": redis}, dashboard={"port": port})
        rt = Runtime(settings=s, clock=WallClock(), directory=Directory())
        children, _policy = build(rt, make_broker(s, rt))
        assert children[-1].name == GATEWAY


def test_no_order_leaves_once_the_run_is_stopping() -> None:
    h = Harness()
    h.tick("AAPL", 100.0)
    h.ports.is_stopping = True
    d = h.decide("AAPL")
    assert h.broker.submitted == []
    done = h.outcome(d)
    assert done is not None and done.outcome is Outcome.REFUSED
    assert done.detail.startswith("refused:stopping")


def test_sigterm_under_load_no_order_after_stopping_is_logged(tmp_path: Path) -> None:
    """As an operator checks it: the ledger's order times against the log's "stopping"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        AEGIS_FEED__TICK_INTERVAL_S="0.005",
        AEGIS_FEED__VOLATILITY="0.01",
        AEGIS_DASHBOARD__PORT="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis_actors", "--for", "30"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db_path = tmp_path / "var" / "aegis.db"

    def orders() -> int:
        if not db_path.exists():
            return 0
        try:
            with sqlite3.connect(db_path) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0])
        except sqlite3.Error:
            return 0

    try:
        wait_until(lambda: orders() >= 5, timeout=40, what="orders under load")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    lines = [json.loads(x) for x in (tmp_path / "logs" / "aegis.jsonl").read_text().splitlines()]
    stopping = [x["ts"] for x in lines if x["msg"].startswith("stopping (")]
    assert stopping
    at = datetime.fromisoformat(stopping[-1]).timestamp() + 0.001  # the log keeps milliseconds
    with sqlite3.connect(db_path) as conn:
        late = conn.execute("SELECT client_order_id FROM orders WHERE created_at > ?", (at,))
        assert late.fetchall() == []
