"""Issue 11: one order vocabulary and a tested state machine. Random broker event
orderings (late acks, fills racing cancels, the same fill twice, lost answers) never
reach an illegal state and never lose a fill."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from money_kit import market_order

from aegis_actors.brokers import OrderStatus as BrokerStatus
from aegis_actors.execution.lifecycle import (
    LEGAL,
    Acked,
    AnswerLost,
    Cancelled,
    Event,
    Expired,
    Filled,
    OrderState,
    Rejected,
)
from aegis_actors.messages import FINAL_STATUSES, OrderStatus, OrderUpdate, WriteAhead
from aegis_actors.metrics import FAILED_ORDER_STATUSES
from aegis_actors.store.schema import ORDER_STATUSES

fills = st.builds(
    Filled,
    fill_id=st.sampled_from([f"b-1-{i}" for i in range(1, 7)]),
    qty=st.sampled_from([1.0, 2.0, 5.0]),
)
events = st.one_of(
    st.just(Acked()),
    fills,
    st.just(Cancelled()),
    st.just(Expired()),
    st.just(Rejected()),
    st.just(AnswerLost()),
)


@settings(max_examples=400, deadline=None)
@given(qty=st.sampled_from([1.0, 5.0, 10.0]), seq=st.lists(events, max_size=25))
def test_any_broker_event_ordering_stays_legal_and_keeps_every_fill(
    qty: float, seq: list[Event]
) -> None:
    state = OrderState(qty)
    distinct: dict[str, float] = {}
    for ev in seq:
        before = state.status
        t = state.apply(ev)  # raises IllegalTransition on an edge LEGAL does not have
        assert t.old is before and state.status is t.new
        assert not t.moved or t.new in LEGAL[t.old]
        if isinstance(ev, Filled):
            distinct.setdefault(ev.fill_id, ev.qty)
        # Never a fill lost, never one counted twice.
        assert state.fills == distinct
        if before in FINAL_STATUSES and before is not OrderStatus.CANCELLED:
            assert state.status is before or before is OrderStatus.EXPIRED
        if state.status is OrderStatus.UNKNOWN:
            assert before in (OrderStatus.NEW, OrderStatus.UNKNOWN)
    if state.complete and state.status is not OrderStatus.REJECTED:
        assert state.status is OrderStatus.FILLED


def test_one_vocabulary_everywhere() -> None:
    assert BrokerStatus is OrderStatus
    assert set(ORDER_STATUSES) == {s.value for s in OrderStatus}
    assert FAILED_ORDER_STATUSES - {"not_written"} <= set(ORDER_STATUSES)
    for bad in ("sent", "error", "failed"):
        try:
            OrderUpdate(client_order_id="x", status=bad, ts=0.0)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted as an order status")


def test_a_fill_racing_a_cancel_completes_the_order() -> None:
    s = OrderState(10.0)
    s.apply(Acked())
    s.apply(Filled("f-1", 4.0))
    assert s.apply(Cancelled()).new is OrderStatus.CANCELLED
    assert s.apply(Filled("f-2", 6.0)).new is OrderStatus.FILLED
    assert s.filled_qty == 10.0


def test_the_ledger_moves_an_order_only_along_the_state_machine(tmp_path: object) -> None:
    """A late `accepted` after `filled` (a replayed or reordered update) is refused by the
    store, counted, and the row keeps `filled`."""
    from pathlib import Path

    from conftest import settle

    from aegis_actors.app import Aegis
    from aegis_actors.messages import GetStatus, WriteOrder
    from aegis_actors.runtime import STORE
    from aegis_actors.settings import load_settings
    from aegis_actors.store import open_database
    from supervisors.clock import VirtualClock

    root = Path(str(tmp_path))
    db_path = str(root / "aegis.db")
    app = Aegis(
        load_settings(
            None,
            store={"sqlite_path": db_path, "spool_path": str(root / "spool.db")},
            broker={"paper_state_path": str(root / "paper.json")},
            run={"log_dir": str(root / "logs")},
            dashboard={"port": 0},
            feed={"symbols": ["SPY"]},
        ),
        clock=VirtualClock(),
        stderr=False,
    )
    app.start()
    settle()  # reconciliation done on an empty ledger
    try:
        d = app.rt.directory  # type: ignore[union-attr]
        order = market_order("ae-1")
        assert d.ask(STORE, WriteOrder(order=order), 5.0).status is WriteAhead.NEW
        d.tell(STORE, OrderUpdate(client_order_id="ae-1", status=OrderStatus.FILLED, ts=2.0))
        d.tell(STORE, OrderUpdate(client_order_id="ae-1", status=OrderStatus.ACCEPTED, ts=3.0))
        d.ask(STORE, GetStatus(), 5.0)
        settle()
        db = open_database(sqlite_path=db_path)
        assert db.select("orders")[0]["status"] == "filled"
        db.close()
        refused = app.rt.metrics.errors.labels("order_status_refused")  # type: ignore[union-attr]
        assert refused._value.get() == 1
    finally:
        app.stop("test over")


@pytest.mark.integration
def test_legacy_statuses_are_migrated_into_the_vocabulary(pg_dsn: str) -> None:
    from aegis_actors.store import open_database

    db = open_database(postgres_dsn=pg_dsn)
    row = {"client_order_id": "ae-old", "symbol": "AAPL", "side": "buy", "qty": 1.0}
    db.insert("orders", {**row, "status": "failed"})
    db.delete("schema_version", {"version": 11})  # as a ledger from before issue 11
    db.migrate()
    (migrated,) = db.select("orders")
    db.close()
    assert migrated["status"] == "cancelled" and migrated["error"] == "legacy status failed"
