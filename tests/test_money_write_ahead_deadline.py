"""Issue 11, defect 4: a write-ahead has a deadline on both sides.

Execution gave up on a slow write-ahead confirmation (2 s) and did not send, but the store
inserted the row later, and that `new` row lingered until a restart. Now the store does
not write a write-ahead past its deadline, and a row it wrote late becomes `cancelled`
with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from conftest import settle, wait_until
from money_kit import buy, market_order, pg_store

from aegis_actors.messages import (
    GetStatus,
    Tick,
    WriteAhead,
    WriteOrder,
)
from aegis_actors.runtime import EXECUTION, STORE
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock


@pytest.mark.integration
def test_a_write_ahead_confirmed_too_late_is_cancelled_and_never_sent(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    app = aegis_factory(
        store=pg_store(aegis_env, pg_dsn),
        feed={"symbols": ["SPY"]},
    )
    d = app.rt.directory
    d.tell(EXECUTION, Tick(symbol="AAPL", price=100.0, ts=vclock.now()))
    settle()
    # Another session holds the orders table: the store's insert waits past the deadline.
    blocker = psycopg2.connect(pg_dsn)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        d.tell(EXECUTION, buy("d-slow", vclock.now()))
        wait_until(lambda: d.ask(EXECUTION, GetStatus(), 5.0)["errors"] == 1, what="give-up")
    finally:
        blocker.rollback()  # the store's insert now goes through, late
        blocker.close()
    settle()
    db = open_database(postgres_dsn=pg_dsn)
    rows = wait_until(
        lambda: [r for r in db.select("orders") if r["status"] != "new"] or None,
        what="the late row cancelled",
    )
    assert db.count("orders", {"status": "new"}) == 0
    db.close()
    assert [(r["status"], r["error"]) for r in rows] == [
        ("cancelled", "write-ahead not confirmed within 2s; never sent")
    ]
    assert app.broker.open_orders() == [] and app.broker.positions() == []


@pytest.mark.integration
def test_the_store_does_not_write_a_write_ahead_past_its_deadline(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str
) -> None:
    app = aegis_factory(
        store=pg_store(aegis_env, pg_dsn),
        feed={"symbols": ["SPY"]},
    )
    order = market_order("ae-late")
    answer = app.rt.directory.ask(STORE, WriteOrder(order=order, deadline=time.time() - 1), 5.0)
    assert answer.status is WriteAhead.EXPIRED and not answer.written
    db = open_database(postgres_dsn=pg_dsn)
    assert db.select("orders") == []
    db.close()


@pytest.mark.integration
def test_a_write_ahead_whose_outcome_is_unknown_is_cancelled_once_the_store_is_back(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    """The link breaks during the INSERT: it may have landed. The order is not sent, so a
    row that did land must not stay `new` (chaos finding C6)."""
    from tcp_proxy import proxied_dsn

    proxy, dsn = proxied_dsn(pg_dsn)
    db = open_database(postgres_dsn=pg_dsn)
    try:
        app = aegis_factory(
            store=pg_store(aegis_env, dsn, retry_initial_s=1.0, retry_max_s=1.0),
            feed={"symbols": ["SPY"]},
        )
        order = market_order("ae-maybe")
        proxy.cut()
        db.insert(  # what the server had committed when the link broke
            "orders", {**order.model_dump(mode="json"), "status": "new", "posture": None}
        )
        answer = app.rt.directory.ask(STORE, WriteOrder(order=order), 5.0)
        assert answer.status is WriteAhead.ERROR and not answer.written
        proxy.restore()

        def cancelled() -> Any:
            # The store may notice the outage (and set its retry timer) after any one step
            # of the clock: keep time moving until the retry has run.
            vclock.advance(0.05)
            r = db.select("orders")[0]
            return r["status"] == "cancelled" and r

        row = wait_until(cancelled, what="the maybe-written row cancelled")
        assert "outcome unknown" in row["error"]
    finally:
        db.close()
        proxy.close()


@pytest.mark.integration
def test_a_ledger_unreadable_at_start_is_reconciled_as_soon_as_it_can_be_read(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    """A write-ahead left `new` by the last run (never sent) while the store cannot be read
    at start: reconciliation checks it with the broker once the ledger is back (C6)."""
    from tcp_proxy import proxied_dsn

    db = open_database(postgres_dsn=pg_dsn)
    db.insert(
        "orders",
        {
            "client_order_id": "ae-left-new",
            "decision_id": "d",
            "symbol": "AAPL",
            "side": "buy",
            "qty": 1.0,
            "order_type": "market",
            "intent": "entry",
            "status": "new",
            "created_at": 1.0,
        },
    )
    proxy, dsn = proxied_dsn(pg_dsn)
    proxy.cut()
    try:
        aegis_factory(
            store=pg_store(aegis_env, dsn, retry_initial_s=1.0, retry_max_s=1.0),
            broker={"paper_state_path": str(aegis_env / "var" / "paper.json")},
            feed={"symbols": ["SPY"]},
        )
        assert db.select("orders")[0]["status"] == "new"
        proxy.restore()
        for _ in range(12):  # the store's retry, then execution's next sweep
            vclock.advance(0.5)
            settle()
        row = wait_until(
            lambda: (r := db.select("orders")[0])["status"] == "cancelled" and r,
            what="the stale row reconciled",
        )
        assert "never reached the broker" in row["error"]
    finally:
        db.close()
        proxy.close()
