"""Write-ahead orders: an order that is not written first is never sent, and the same
decision can never produce a second order (deterministic client order id)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import settle, wait_until
from money_kit import buy, pg_store
from tcp_proxy import proxied_dsn

from aegis_actors.execution.risk import client_order_id
from aegis_actors.messages import GetStatus
from aegis_actors.runtime import EXECUTION
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock


def execution(app: Any) -> dict[str, Any]:
    return app.rt.directory.ask(EXECUTION, GetStatus(), 5.0)


def test_same_decision_gives_one_id_and_one_order(
    aegis_factory: Callable[..., Any], aegis_env: Path, vclock: VirtualClock
) -> None:
    assert client_order_id("d-1", "entry") == client_order_id("d-1", "entry")
    assert client_order_id("d-1", "entry") != client_order_id("d-2", "entry")
    app = aegis_factory(
        feed={"symbols": ["SPY"]},
        broker={"paper_state_path": str(aegis_env / "var" / "paper.json")},
    )
    app.rt.directory.tell(EXECUTION, buy("d-1", vclock.now()))
    app.rt.directory.tell(EXECUTION, buy("d-1", vclock.now()))  # replayed decision
    settle()
    assert app.broker.sent == {client_order_id("d-1", "entry"): 1}
    db = open_database(sqlite_path=str(aegis_env / "var" / "aegis.db"))
    assert [r["client_order_id"] for r in db.select("orders")] == [client_order_id("d-1", "entry")]
    db.close()


@pytest.mark.integration
def test_order_not_written_is_never_sent(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    proxy, dsn = proxied_dsn(pg_dsn)
    try:
        app = aegis_factory(
            feed={"symbols": ["SPY"]},
            store=pg_store(aegis_env, dsn),
            broker={"paper_state_path": str(aegis_env / "var" / "paper.json")},
        )
        assert execution(app)["mode"] == "normal"
        proxy.cut()  # the write-ahead itself meets the outage
        app.rt.directory.tell(EXECUTION, buy("d-down", vclock.now()))
        wait_until(lambda: execution(app)["errors"] == 1, what="write-ahead failure")
        assert app.broker.sent == {}
        assert app.broker.open_orders() == [] and app.broker.positions() == []
        wait_until(lambda: app.rt.cache.get_json("mode") == "limited", what="limited")
        proxy.restore()
        db = open_database(postgres_dsn=pg_dsn)
        assert db.select("orders") == []
        db.close()
    finally:
        proxy.close()


def test_a_write_ahead_answered_with_the_wrong_type_is_not_taken_for_written(
    aegis_factory: Callable[..., Any],
    aegis_env: Path,
    vclock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store answering the old way (the string "new") is a bug: nothing is sent, the
    order is counted as an error, and the mode goes limited, as for any unwritten order."""
    from aegis_actors.store import actor

    monkeypatch.setattr(actor, "ack", lambda status, detail="": status.value)  # "new"
    app = aegis_factory(
        feed={"symbols": ["SPY"]},
        broker={"paper_state_path": str(aegis_env / "var" / "paper.json")},
    )
    app.rt.directory.tell(EXECUTION, buy("d-typed", vclock.now()))
    settle()
    wait_until(lambda: execution(app)["errors"] >= 1, what="the order refused as not written")
    assert execution(app)["errors"] == 1 and execution(app)["orders"] == 0
    assert app.broker.sent == {} and app.broker.open_orders() == []
    wait_until(lambda: app.rt.cache.get_json("mode") == "limited", what="limited")
