"""The Alpaca REST broker against a local server on 127.0.0.1 speaking the v2 subset,
with scripted rejections and outages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aegis_actors.brokers import BrokerError, BrokerOrder, OrderStatus, OrderType, Side
from aegis_actors.brokers.alpaca import AlpacaBroker
from aegis_actors.brokers.alpaca_sim import AlpacaSim
from aegis_actors.store import open_database
from tests.conftest import settle, wait_until


@pytest.fixture
def sim() -> Iterator[AlpacaSim]:
    s = AlpacaSim().start()
    yield s
    s.stop()


def broker(sim: AlpacaSim, **kw: object) -> AlpacaBroker:
    now = [1000.0]
    opts: dict = {"timeout_s": 0.5, "retries": 2, "retry_backoff_s": 0.0, "poll_every_s": 0.0}
    opts.update(kw)
    b = AlpacaBroker(sim.url, sim.key_id, sim.secret_key, clock_now=lambda: now[0], **opts)
    return b


def buy(
    coid: str, qty: float = 10, limit: float | None = None, symbol: str = "AAPL"
) -> BrokerOrder:
    otype = OrderType.LIMIT if limit else OrderType.MARKET
    return BrokerOrder(coid, symbol, Side.BUY, qty, otype, limit)


def test_account_positions_and_a_market_fill(sim: AlpacaSim) -> None:
    b = broker(sim)
    sim.set_price("AAPL", 100.0)
    ack = b.submit(buy("c1"))
    assert ack.accepted and ack.status is OrderStatus.FILLED
    fills = b.poll_fills()
    assert [(f.client_order_id, f.qty, f.price) for f in fills] == [("c1", 10.0, 100.0)]
    assert b.poll_fills() == []  # each fill once
    assert [(p.symbol, p.qty, p.avg_price) for p in b.positions()] == [("AAPL", 10.0, 100.0)]
    acct = b.account()
    assert acct.cash == pytest.approx(99_000.0) and acct.equity == pytest.approx(100_000.0)


def test_keys_go_in_the_headers_and_bad_keys_are_refused(sim: AlpacaSim) -> None:
    bad = AlpacaBroker(sim.url, "wrong", "wrong", timeout_s=0.5, retries=0)
    with pytest.raises(BrokerError, match="not authorised"):
        bad.account()
    ack = bad.submit(buy("c1"))
    assert not ack.accepted and "forbidden" in ack.reason


def test_403_and_422_are_rejections_with_the_reason(sim: AlpacaSim) -> None:
    b = broker(sim)
    sim.set_price("AAPL", 100.0)
    too_big = b.submit(buy("big", qty=5_000))
    assert not too_big.accepted and "403" in too_big.reason and "buying power" in too_big.reason
    bad = b.submit(BrokerOrder("lim", "AAPL", Side.BUY, 1, OrderType.LIMIT, None))
    assert not bad.accepted and "422" in bad.reason
    assert sim.created == {}
    assert b.submit(buy("big", qty=5_000)) == too_big  # the same answer, no second request


def test_lost_answer_is_resolved_by_client_order_id_never_a_second_order(sim: AlpacaSim) -> None:
    b = broker(sim)
    sim.set_price("AAPL", 100.0)
    sim.fail("POST", "/v2/orders", "lost")  # created at the broker, answer is a 500
    ack = b.submit(buy("c1"))
    assert ack.accepted and ack.broker_order_id == sim.by_coid["c1"]
    assert sim.created == {"c1": 1}
    assert [m for m, p in sim.requests if p == "/v2/orders"] == ["POST"]
    assert ("GET", "/v2/orders:by_client_order_id") in sim.requests


def test_timeout_then_retry_creates_one_order(sim: AlpacaSim) -> None:
    b = broker(sim, timeout_s=0.2)
    sim.set_price("AAPL", 100.0)
    sim.fail("POST", "/v2/orders", "hang", hang_s=0.4)  # order is created after the timeout
    ack = b.submit(buy("c1"))
    assert ack.accepted
    assert sim.created == {"c1": 1}


def test_429_and_503_are_retried_under_the_same_id(sim: AlpacaSim) -> None:
    b = broker(sim)
    sim.set_price("AAPL", 100.0)
    sim.fail("POST", "/v2/orders", 429)
    sim.fail("POST", "/v2/orders", 503)
    ack = b.submit(buy("c1"))
    assert ack.accepted and sim.created == {"c1": 1}
    posts = [m for m, p in sim.requests if p == "/v2/orders" and m == "POST"]
    assert len(posts) == 3


def test_a_long_outage_is_an_unknown_state_then_resolved(sim: AlpacaSim) -> None:
    b = broker(sim, retries=1)
    sim.set_price("AAPL", 100.0)
    sim.fail("POST", "/v2/orders", 503, count=5)
    sim.fail("GET", "/v2/orders:by_client_order_id", 503, count=5)
    with pytest.raises(BrokerError, match="503"):
        b.submit(buy("c1"))
    sim.faults.clear()
    assert b.order("c1") is None  # never created: safe to send again under the same id
    assert b.submit(buy("c1")).accepted and sim.created == {"c1": 1}


def test_partial_fills_by_polling_then_cancel(sim: AlpacaSim) -> None:
    sim.fill_fraction = 0.5
    b = broker(sim)
    ack = b.submit(buy("c1", qty=10, limit=100.0))
    assert ack.status is OrderStatus.ACCEPTED and b.poll_fills() == []
    sim.set_price("AAPL", 99.0)
    f1 = b.poll_fills()
    assert [(f.qty, f.price) for f in f1] == [(5.0, 99.0)]
    assert [o.client_order_id for o in b.open_orders()] == ["c1"]
    assert b.cancel("c1") is True
    assert b.cancel("c1") is False  # already final: 422 not cancelable
    assert b.order("c1").status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert b.open_orders() == [] and b.poll_fills() == []


def test_cancel_all_and_close_all_positions(sim: AlpacaSim) -> None:
    b = broker(sim)
    sim.set_price("AAPL", 100.0)
    sim.set_price("MSFT", 50.0)
    b.submit(buy("a"))
    b.submit(buy("m", symbol="MSFT"))
    b.submit(buy("rest", limit=90.0))
    assert b.cancel_all() == ["rest"]
    acks = b.close_all_positions()
    assert len(acks) == 2 and all(a.accepted for a in acks)
    assert b.positions() == [] and b.open_orders() == []


def test_broker_price_is_the_position_mark_while_fresh(sim: AlpacaSim) -> None:
    now = [0.0]
    b = AlpacaBroker(sim.url, sim.key_id, sim.secret_key, price_ttl_s=5.0, clock_now=lambda: now[0])
    sim.set_price("AAPL", 100.0)
    b.submit(buy("c1"))
    sim.mark_offset["AAPL"] = 1.01
    b.positions()
    assert b.last_price("AAPL") == pytest.approx(101.0)
    now[0] = 6.0
    assert b.last_price("AAPL") is None


# -- fill history (account activities) --------------------------------------------------


def test_fills_for_reads_the_activities_of_a_partial_and_a_full_order(sim: AlpacaSim) -> None:
    sim.fill_fraction = 0.5
    b = broker(sim)
    sim.set_price("AAPL", 100.0)
    sim.set_price("MSFT", 50.0)
    b.submit(buy("full"))  # 5 at 100 on submit
    b.submit(buy("part", symbol="MSFT"))  # 5 at 50, then never more
    sim.set_price("AAPL", 102.0)  # the other 5 at 102
    polled = b.poll_fills()
    full, part = sim.by_coid["full"], sim.by_coid["part"]
    got = b.fills_for("full")
    assert [(f.fill_id, f.qty, f.price, f.side) for f in got] == [
        (f"{full}-5", 5.0, 100.0, Side.BUY),
        (f"{full}-10", 5.0, 102.0, Side.BUY),
    ]
    assert all(f.client_order_id == "full" and f.broker_order_id == full for f in got)
    assert all(f.symbol == "AAPL" and f.ts > 0 for f in got)
    assert [(f.fill_id, f.qty, f.price) for f in b.fills_for("part")] == [(f"{part}-5", 5.0, 50.0)]
    # The same fill has the same id whichever way it was learnt: the ledger keeps it once.
    assert {f.fill_id for f in polled} == {f"{full}-5", f"{full}-10", f"{part}-5"}


def test_fills_for_an_unknown_or_unfilled_order_is_empty(sim: AlpacaSim) -> None:
    b = broker(sim)
    assert b.fills_for("nobody") == []
    b.submit(buy("resting", limit=90.0))
    assert b.fills_for("resting") == []  # no price yet: nothing filled


def test_fills_for_follows_the_pages_and_keeps_only_its_order(sim: AlpacaSim) -> None:
    sim.set_price("AAPL", 100.0)
    for i in range(120):  # more fills than one page, before and around ours
        body = b'{"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", '
        sim.dispatch("POST", "/v2/orders", {}, body + f'"client_order_id": "o{i}"}}'.encode())
    b = broker(sim)
    b.submit(buy("mine", qty=3))
    (f,) = b.fills_for("mine")
    assert (f.client_order_id, f.qty, f.price) == ("mine", 3.0, 100.0)
    assert sim.requests.count(("GET", "/v2/account/activities/FILL")) == 2


def test_fills_for_during_an_outage_is_a_broker_error(sim: AlpacaSim) -> None:
    b = broker(sim, retries=1)
    sim.set_price("AAPL", 100.0)
    b.submit(buy("c1"))
    sim.fail("GET", "/v2/account/activities", 503, count=2)
    with pytest.raises(BrokerError, match="503"):
        b.fills_for("c1")
    assert [f.qty for f in b.fills_for("c1")] == [10.0]  # after the outage, read as normal


@pytest.mark.e2e
def test_a_fill_the_ledger_missed_is_recovered_once_after_a_restart(
    sim: AlpacaSim, aegis_factory: Any, aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = b'{"symbol": "%s", "qty": "%s", "side": "buy", "type": "market", '
    sim.set_price("AAPL", 100.0)
    sim.set_price("MSFT", 50.0)
    sim.fill_fraction = 0.5  # AAPL: 5 at 100 now, 5 at 102 later
    sim.dispatch(
        "POST", "/v2/orders", {}, order % (b"AAPL", b"10") + b'"client_order_id": "ae-part"}'
    )
    sim.set_price("AAPL", 102.0)
    sim.fill_fraction = 1 / 3  # MSFT: 10 at 50 now, 10 at 51 and 10 at 52 later
    sim.dispatch(
        "POST", "/v2/orders", {}, order % (b"MSFT", b"30") + b'"client_order_id": "ae-merged"}'
    )
    sim.set_price("MSFT", 51.0)
    sim.set_price("MSFT", 52.0)
    part, merged = sim.by_coid["ae-part"], sim.by_coid["ae-merged"]
    # The ledger before the crash: ae-part's first fill only; ae-merged's first two fills
    # as the one fill a poll saw (named by the cumulative qty it reached), not its third.
    db = open_database(sqlite_path=str(aegis_env / "var" / "aegis.db"))
    db.insert("orders", ledger_row("ae-part", part, "AAPL", 10.0, filled=5.0))
    db.insert("orders", ledger_row("ae-merged", merged, "MSFT", 30.0, filled=20.0))
    db.insert("fills", fill_row(f"{part}-5", "ae-part", "AAPL", 5.0, 100.0))
    db.insert("fills", fill_row(f"{merged}-20", "ae-merged", "MSFT", 20.0, 50.5))
    db.close()
    monkeypatch.setenv("AEGIS_BROKER__KEY_ID", sim.key_id)
    monkeypatch.setenv("AEGIS_BROKER__SECRET_KEY", sim.secret_key)
    settings = {
        "broker": {"kind": "alpaca", "url": sim.url, "poll_every_s": 0.0},
        "feed": {"symbols": ["SPY"], "volatility": 0.0},
    }
    app = aegis_factory(**settings)
    assert app.rt is not None
    wait_until(lambda: len(fills_in(aegis_env)) == 4, what="the missed fills recovered")
    settle()
    assert sorted(fills_in(aegis_env)) == sorted(
        [
            (f"{part}-5", 5.0, 100.0),
            (f"{part}-10", 5.0, 102.0),
            (f"{merged}-20", 20.0, 50.5),
            (f"{merged}-30", 10.0, 52.0),
        ]
    )
    db = open_database(sqlite_path=str(aegis_env / "var" / "aegis.db"))
    rows = {r["client_order_id"]: r for r in db.select("orders")}
    assert (rows["ae-part"]["status"], rows["ae-part"]["filled_qty"]) == ("filled", 10.0)
    assert rows["ae-part"]["avg_fill_price"] == pytest.approx(101.0)
    assert (rows["ae-merged"]["status"], rows["ae-merged"]["filled_qty"]) == ("filled", 30.0)
    db.close()
    app.stop("restart")

    again = aegis_factory(**settings)
    settle()
    assert again.rt is not None
    assert again.rt.metrics.errors.labels("reconcile_difference")._value.get() == 0
    assert len(fills_in(aegis_env)) == 4  # a second start books nothing twice


def ledger_row(coid: str, oid: str, symbol: str, qty: float, filled: float) -> dict[str, Any]:
    return {
        "client_order_id": coid,
        "decision_id": f"d-{coid}",
        "event_id": f"e-{coid}",
        "symbol": symbol,
        "side": "buy",
        "qty": qty,
        "order_type": "market",
        "intent": "entry",
        "posture": "guerrilla",
        "status": "partially_filled",
        "filled_qty": filled,
        "broker_order_id": oid,
        "created_at": 1.0,
        "updated_at": 1.0,
    }


def fill_row(fill_id: str, coid: str, symbol: str, qty: float, price: float) -> dict[str, Any]:
    return {
        "fill_id": fill_id,
        "client_order_id": coid,
        "symbol": symbol,
        "side": "buy",
        "qty": qty,
        "price": price,
        "fee": 0.0,
        "ts": 1.0,
    }


def fills_in(env: Path) -> list[tuple[str, float, float]]:
    db = open_database(sqlite_path=str(env / "var" / "aegis.db"))
    try:
        return [(f["fill_id"], f["qty"], f["price"]) for f in db.select("fills")]
    finally:
        db.close()
