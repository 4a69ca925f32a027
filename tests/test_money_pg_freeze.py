"""Issue 11, defect 6 with PostgreSQL frozen (a black hole: the connection stays open and
nothing comes back): the store used to block for good inside psycopg2, and every
write-ahead (stop-losses included) behind it. Now a silent server is an outage after
`store.io_timeout_s`: the stop-loss goes out on the local spool and is in the ledger
once PostgreSQL answers again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
from conftest import settle, wait_until
from money_kit import book_holding, long_position, pg_store
from tcp_proxy import proxied_dsn

from aegis_actors.messages import GetStatus, Tick
from aegis_actors.runtime import EXECUTION, STORE
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock


@pytest.mark.integration
def test_stop_loss_goes_out_while_postgres_is_frozen(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    state = aegis_env / "var" / "paper.json"
    broker, entry = book_holding(state, vclock)
    db = open_database(postgres_dsn=pg_dsn)
    db.insert("positions", long_position(entry))
    proxy, dsn = proxied_dsn(pg_dsn)
    try:
        app = aegis_factory(
            store=pg_store(
                aegis_env,
                dsn,
                io_timeout_s=0.5,
                connect_timeout_s=1,
                retry_initial_s=1.0,
                retry_max_s=1.0,
            ),
            broker={"paper_state_path": str(state)},
            feed={"symbols": ["SPY"]},
        )
        d = app.rt.directory
        proxy.freeze()
        d.tell(EXECUTION, Tick(symbol="AAPL", price=90.0, ts=vclock.now()))  # under the stop
        wait_until(lambda: app.broker.positions() == [], timeout=30, what="the stop-loss out")
        assert d.ask(STORE, GetStatus(), 5.0)["up"] is False

        proxy.restore()
        vclock.advance(1.5)
        wait_until(
            lambda: (s := d.ask(STORE, GetStatus(), 5.0))["up"] and s["spool"] == 0,
            timeout=30,
            what="the spool replayed",
        )
        settle()
        exits = [r for r in db.select("orders") if r["intent"] == "exit"]
        assert [(r["symbol"], r["status"], r["filled_qty"]) for r in exits] == [
            ("AAPL", "filled", 10.0)
        ]
        assert db.select("positions") == []
    finally:
        db.close()
        proxy.close()


@pytest.mark.integration
def test_a_stop_cuts_a_wait_on_a_frozen_postgresql_short(pg_dsn: str) -> None:
    """Chaos finding C3: the store blocked in a wait on a frozen server overran its shutdown
    timeout (5 s) because the wait's deadline is `io_timeout_s` (10 s). Once the run is
    stopping, a silent server gets a second, then the store is free to stop."""
    from tcp_proxy import proxied_dsn

    from aegis_actors.store.postgres import PostgresDatabase, ServerSilent

    proxy, dsn = proxied_dsn(pg_dsn)
    stopping = threading.Event()
    db = PostgresDatabase(dsn, io_timeout_s=120.0, stopping=stopping)
    outcome: list[BaseException | None] = []

    def query() -> None:
        try:
            db.select("orders", limit=1)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    try:
        db.migrate()
        proxy.freeze()
        worker = threading.Thread(target=query, daemon=True)
        worker.start()
        worker.join(0.3)
        assert worker.is_alive(), "the frozen server answered"
        stopping.set()
        wait_until(lambda: outcome, timeout=10.0, what="the wait cut short by the stop")
        assert outcome[0] is not None
        assert isinstance(outcome[0], ServerSilent | psycopg2.OperationalError) or (
            "no answer" in str(outcome[0])
        )
    finally:
        proxy.close()
        db.close()
