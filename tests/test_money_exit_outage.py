"""Issue 11, defect 6: with PostgreSQL down, a stop-loss must still go out.

Exits were blocked until the durable store came back (one went out at -12 %). Now a
risk-reducing order's write-ahead goes to the local spool (fsynced) and is replayed when
the store is back; new entries still wait for the store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import settle, wait_until
from money_kit import book_holding, buy, long_position, pg_store
from tcp_proxy import proxied_dsn

from aegis_actors.messages import GetStatus, Tick
from aegis_actors.runtime import EXECUTION, STORE
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock


@pytest.mark.integration
def test_stop_loss_goes_out_while_postgres_is_down_and_is_in_the_ledger_after(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    state = aegis_env / "var" / "paper.json"
    broker, entry = book_holding(state, vclock)
    db = open_database(postgres_dsn=pg_dsn)
    db.insert("positions", long_position(entry))
    proxy, dsn = proxied_dsn(pg_dsn)
    try:
        app = aegis_factory(
            store=pg_store(aegis_env, dsn, retry_initial_s=1.0, retry_max_s=1.0),
            broker={"paper_state_path": str(state)},
            feed={"symbols": ["SPY"]},
        )
        d = app.rt.directory
        proxy.cut()
        d.tell(EXECUTION, Tick(symbol="MSFT", price=100.0, ts=vclock.now()))
        d.tell(
            EXECUTION, buy("d-MSFT", vclock.now(), symbol="MSFT")
        )  # a new entry: waits for the store
        d.tell(EXECUTION, Tick(symbol="AAPL", price=90.0, ts=vclock.now()))  # under the stop
        wait_until(lambda: app.broker.positions() == [], what="the stop-loss to close AAPL")
        settle()
        assert [c for c in app.broker.sent if c != "ae-entry"] and all(
            o.symbol != "MSFT" for o in app.broker.inner._orders.values()
        )
        assert d.ask(STORE, GetStatus(), 5.0)["spooled_kinds"].get("WriteOrder") == 1

        proxy.restore()
        vclock.advance(1.5)
        wait_until(
            lambda: (s := d.ask(STORE, GetStatus(), 5.0))["up"] and s["spool"] == 0,
            what="the spool replayed",
        )
        settle()
        exits = [r for r in db.select("orders") if r["intent"] == "exit"]
        assert [(r["symbol"], r["status"], r["filled_qty"]) for r in exits] == [
            ("AAPL", "filled", 10.0)
        ]
        fills = db.select("fills", {"client_order_id": exits[0]["client_order_id"]})
        assert sum(f["qty"] for f in fills) == 10.0
        assert db.select("positions") == []
        assert db.select("orders", {"symbol": "MSFT"}) == []
    finally:
        db.close()
        proxy.close()


@pytest.mark.integration
def test_a_long_spool_never_holds_up_the_stop_and_is_kept_for_the_next_run(
    aegis_factory: Callable[..., Any],
    aegis_env: Path,
    pg_dsn: str,
    vclock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aegis_actors.messages import KvPut
    from aegis_actors.store import actor as store_actor

    monkeypatch.setattr(store_actor, "STOP_REPLAY_BUDGET_S", 0.0)  # "long": past the budget
    proxy, dsn = proxied_dsn(pg_dsn)
    settings = {
        "store": {
            "postgres_dsn": dsn,
            "spool_path": str(aegis_env / "var" / "spool.db"),
            "retry_initial_s": 1.0,
            "retry_max_s": 1.0,
        },
        "feed": {"symbols": ["SPY"]},
    }
    try:
        app = aegis_factory(**settings)
        d = app.rt.directory
        proxy.cut()
        for i in range(300):
            d.tell(STORE, KvPut(key=f"k{i}", value=i, ts=vclock.now()))
        wait_until(lambda: d.ask(STORE, GetStatus(), 5.0)["spool"] >= 300, what="spooled")
        app.rt.stopping.set()  # the stop has begun when the store comes back
        proxy.restore()
        vclock.advance(1.5)
        settle()
        assert d.ask(STORE, GetStatus(), 5.0)["spool"] >= 300  # kept, not replayed now
        assert app.stop("test") == 0
        again = aegis_factory(**settings)  # the next run replays it first
        wait_until(lambda: again.rt.directory.ask(STORE, GetStatus(), 5.0)["spool"] == 0)
        db = open_database(postgres_dsn=pg_dsn)
        assert db.count("kv", {"key": "k299"}) == 1
        db.close()
    finally:
        proxy.close()
