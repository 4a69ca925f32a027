"""Issue 11, defect 5: positions of the paper broker must not vanish on restart.

The default paper book was in memory, so a restart found positions "in the ledger, not
at the broker" and closed them with no fill and no P&L. Now the paper book is durable by
default (var/paper.json); a throwaway in-memory book (paper_state_path = "") still dies
with its run, but the restart closes its positions at the last price with a booked
order, fill and P&L.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import settle, wait_until
from money_kit import buy

from aegis_actors.brokers.durable_paper import DurablePaperBroker
from aegis_actors.clock import WallClock
from aegis_actors.messages import Tick
from aegis_actors.runtime import EXECUTION, Runtime
from aegis_actors.settings import Settings
from aegis_actors.store import open_database
from aegis_actors.tree import make_broker
from supervisors import Directory
from supervisors.clock import VirtualClock


def test_the_paper_book_is_durable_by_default() -> None:
    s = Settings()
    rt = Runtime(settings=s, clock=WallClock(), directory=Directory())
    assert s.broker.paper_state_path == "var/paper.json"
    assert isinstance(make_broker(s, rt), DurablePaperBroker)


@pytest.mark.integration
def test_a_throwaway_book_is_closed_at_restart_with_a_fill_and_pnl(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    settings = {
        "store": {"postgres_dsn": pg_dsn, "spool_path": str(aegis_env / "var" / "spool.db")},
        "broker": {"paper_state_path": ""},
        "feed": {"symbols": ["SPY"]},
    }
    first = aegis_factory(**settings)
    d = first.rt.directory
    d.tell(EXECUTION, Tick(symbol="AAPL", price=100.0, ts=vclock.now()))
    d.tell(EXECUTION, buy(now=vclock.now()))
    d.tell(EXECUTION, Tick(symbol="AAPL", price=100.0, ts=vclock.now()))
    wait_until(lambda: first.broker.positions(), what="the AAPL position")
    settle()
    first.stop("restart")

    second = aegis_factory(**settings)
    settle()
    db = open_database(postgres_dsn=pg_dsn)
    wait_until(lambda: db.count("fills") == 2, what="the closing fill in the ledger")
    wait_until(lambda: db.select("positions") == [], what="the position closed in the ledger")
    closes = [r for r in db.select("orders") if r["decision_id"] == "restart-close"]
    assert [(r["status"], r["side"], r["intent"]) for r in closes] == [("filled", "sell", "exit")]
    assert "did not survive the restart" in closes[0]["error"]
    fills = db.select("fills", {"client_order_id": closes[0]["client_order_id"]})
    assert [f["qty"] for f in fills] == [closes[0]["qty"]]
    db.close()
    assert second.rt.metrics.errors.labels("reconcile_difference")._value.get() >= 1
