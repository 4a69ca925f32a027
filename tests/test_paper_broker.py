"""PaperBroker: fills, accounting, idempotency and no look-ahead, since money rides on it."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_actors.brokers import (
    Account,
    Ack,
    Broker,
    BrokerFill,
    BrokerOrder,
    OrderStatus,
    OrderType,
    PaperBroker,
    Side,
)

SLIP = 5.0 / 10_000


def make(**kw: Any) -> PaperBroker:
    kw.setdefault("clock_now", lambda: 1_000.0)
    return PaperBroker(**kw)


def free(**kw: Any) -> PaperBroker:
    """No slippage, no commission: for tests about something else."""
    return make(slippage_bps=0.0, commission_per_share=0.0, min_commission=0.0, **kw)


def mkt(cid: str, side: Side, qty: float, symbol: str = "AAPL") -> BrokerOrder:
    return BrokerOrder(cid, symbol, side, qty, OrderType.MARKET)


def lmt(cid: str, side: Side, qty: float, limit: float | None, symbol: str = "AAPL") -> BrokerOrder:
    return BrokerOrder(cid, symbol, side, qty, OrderType.LIMIT, limit)


def test_paper_broker_satisfies_protocol() -> None:
    assert isinstance(make(), Broker)


# -- market orders ----------------------------------------------------------------------------


def test_market_buy_fills_at_last_price_plus_slippage() -> None:
    b = make(commission_per_share=0.0, min_commission=0.0)
    b.on_price("AAPL", 100.0, 1.0)
    ack = b.submit(mkt("c1", Side.BUY, 10))
    assert ack == Ack("c1", True, "paper-1", OrderStatus.FILLED)
    [fill] = b.poll_fills()
    assert fill.price == pytest.approx(100.0 * (1 + SLIP))
    assert fill.price > 100.0
    assert (fill.qty, fill.side, fill.ts, fill.fill_id) == (10, Side.BUY, 1_000.0, "paper-1-1")
    assert b.poll_fills() == []  # each fill once


def test_market_sell_gets_less() -> None:
    b = make(commission_per_share=0.0, min_commission=0.0)
    b.on_price("AAPL", 100.0, 1.0)
    b.submit(mkt("c1", Side.SELL, 10))
    [fill] = b.poll_fills()
    assert fill.price == pytest.approx(100.0 * (1 - SLIP))
    assert fill.price < 100.0


def test_market_order_without_price_waits_for_next_price() -> None:
    b = make()
    ack = b.submit(mkt("c1", Side.BUY, 5))
    assert ack.accepted and ack.status is OrderStatus.ACCEPTED
    assert b.poll_fills() == []
    assert [o.client_order_id for o in b.open_orders()] == ["c1"]
    fills = b.on_price("AAPL", 50.0, 2.0)
    assert [(f.qty, f.ts) for f in fills] == [(5, 2.0)]
    assert fills[0].price == pytest.approx(50.0 * (1 + SLIP))
    assert b.open_orders() == []
    order = b.order("c1")
    assert order is not None and order.status is OrderStatus.FILLED and order.filled_qty == 5


def test_prices_for_other_symbols_do_not_fill() -> None:
    b = free()
    b.submit(mkt("c1", Side.BUY, 5, symbol="MSFT"))
    assert b.on_price("AAPL", 50.0, 1.0) == []
    assert len(b.on_price("MSFT", 300.0, 2.0)) == 1


# -- limit orders -----------------------------------------------------------------------------


def test_limit_buy_rests_until_price_at_or_below_limit() -> None:
    b = free()
    b.on_price("AAPL", 101.0, 1.0)
    ack = b.submit(lmt("c1", Side.BUY, 10, 100.0))
    assert ack.status is OrderStatus.ACCEPTED and b.poll_fills() == []
    assert b.on_price("AAPL", 100.5, 2.0) == []
    [fill] = b.on_price("AAPL", 99.0, 3.0)
    assert fill.price == 99.0  # min(limit, price)


def test_limit_buy_fills_exactly_at_limit() -> None:
    b = free()
    b.submit(lmt("c1", Side.BUY, 10, 100.0))
    [fill] = b.on_price("AAPL", 100.0, 1.0)
    assert fill.price == 100.0


def test_limit_sell_rests_until_price_at_or_above_limit() -> None:
    b = free()
    b.on_price("AAPL", 99.0, 1.0)
    b.submit(lmt("c1", Side.SELL, 10, 100.0))
    assert b.poll_fills() == []
    assert b.on_price("AAPL", 99.9, 2.0) == []
    [fill] = b.on_price("AAPL", 102.0, 3.0)
    assert fill.price == 102.0  # max(limit, price)


def test_marketable_limit_fills_at_submit_in_tick_mode_without_slippage() -> None:
    b = make(commission_per_share=0.0, min_commission=0.0)
    b.on_price("AAPL", 98.0, 1.0)
    ack = b.submit(lmt("c1", Side.BUY, 10, 100.0))
    assert ack.status is OrderStatus.FILLED
    [fill] = b.poll_fills()
    assert fill.price == 98.0


# -- partial fills ----------------------------------------------------------------------------


def test_partial_fills_sum_to_qty_with_statuses() -> None:
    b = free(max_fill_fraction=0.3)
    b.submit(mkt("c1", Side.BUY, 10))
    seen: list[tuple[float, OrderStatus]] = []
    for i in range(6):
        fills = b.on_price("AAPL", 100.0, float(i))
        order = b.order("c1")
        assert order is not None
        seen.extend((f.qty, order.status) for f in fills)
    assert seen == [
        (3, OrderStatus.PARTIALLY_FILLED),
        (3, OrderStatus.PARTIALLY_FILLED),
        (3, OrderStatus.PARTIALLY_FILLED),
        (1, OrderStatus.FILLED),
    ]
    order = b.order("c1")
    assert order is not None and order.filled_qty == 10
    assert b.positions()[0].qty == 10


def test_partial_fill_of_small_whole_share_order_is_at_least_one_share() -> None:
    b = free(max_fill_fraction=0.1)
    b.submit(mkt("c1", Side.BUY, 3))
    qtys = [f.qty for i in range(5) for f in b.on_price("AAPL", 10.0, float(i))]
    assert qtys == [1, 1, 1]


def test_partial_fills_of_fractional_qty_sum_to_qty() -> None:
    b = free(max_fill_fraction=0.4)
    b.submit(mkt("c1", Side.SELL, 2.5))
    qtys = [f.qty for i in range(5) for f in b.on_price("AAPL", 10.0, float(i))]
    assert len(qtys) == 3
    assert sum(qtys) == pytest.approx(2.5)
    order = b.order("c1")
    assert order is not None and order.status is OrderStatus.FILLED and order.filled_qty == 2.5


def test_cancel_stops_a_partially_filled_order() -> None:
    b = free(max_fill_fraction=0.5)
    b.submit(mkt("c1", Side.BUY, 10))
    assert [f.qty for f in b.on_price("AAPL", 10.0, 1.0)] == [5]
    assert b.cancel("c1")
    assert b.on_price("AAPL", 10.0, 2.0) == []
    order = b.order("c1")
    assert order is not None
    assert (order.status, order.filled_qty) == (OrderStatus.CANCELLED, 5)


# -- commissions ------------------------------------------------------------------------------


def test_commission_minimum_and_per_share() -> None:
    b = make(slippage_bps=0.0, commission_per_share=0.005, min_commission=1.0)
    b.on_price("AAPL", 10.0, 1.0)
    b.submit(mkt("small", Side.BUY, 100))  # 0.50 -> minimum 1.00
    b.submit(mkt("big", Side.BUY, 1000))  # 5.00
    fees = [f.fee for f in b.poll_fills()]
    assert fees == [pytest.approx(1.0), pytest.approx(5.0)]
    assert b.account().cash == pytest.approx(100_000 - 11_000 - 6.0)


def test_commission_minimum_is_charged_once_per_order_across_partials() -> None:
    b = make(
        slippage_bps=0.0, commission_per_share=0.005, min_commission=1.0, max_fill_fraction=0.25
    )
    b.submit(mkt("c1", Side.BUY, 1000))
    fees = [f.fee for i in range(4) for f in b.on_price("AAPL", 10.0, float(i))]
    # 250 shares = 1.25 each; the order as a whole pays max(1, 1000 * 0.005) = 5.
    assert fees == pytest.approx([1.25, 1.25, 1.25, 1.25])
    b.submit(mkt("c2", Side.BUY, 100))  # first 25 fill at submit on the known price
    fees = [f.fee for f in b.poll_fills()]
    fees += [f.fee for i in range(4) for f in b.on_price("AAPL", 10.0, float(i))]
    assert fees == pytest.approx([1.0, 0.0, 0.0, 0.0])  # 100 * 0.005 < minimum: paid once


# -- accounting -------------------------------------------------------------------------------


def test_accounting_average_realised_pnl_and_flip() -> None:
    b = free()
    b.on_price("AAPL", 100.0, 1.0)
    b.submit(mkt("b1", Side.BUY, 100))
    b.on_price("AAPL", 110.0, 2.0)
    b.submit(mkt("b2", Side.BUY, 100))
    [pos] = b.positions()
    assert (pos.qty, pos.avg_price) == (200, pytest.approx(105.0))

    b.on_price("AAPL", 120.0, 3.0)
    b.submit(mkt("s1", Side.SELL, 150))  # realise 150 * 15
    [pos] = b.positions()
    assert (pos.qty, pos.avg_price) == (50, pytest.approx(105.0))
    assert b.realized_pnl == pytest.approx(2_250.0)

    b.on_price("AAPL", 90.0, 4.0)
    b.submit(mkt("s2", Side.SELL, 100))  # close 50 at -15 each, then short 50 at 90
    [pos] = b.positions()
    assert (pos.qty, pos.avg_price) == (-50, pytest.approx(90.0))
    assert b.realized_pnl == pytest.approx(2_250.0 - 750.0)

    b.on_price("AAPL", 80.0, 5.0)
    b.submit(mkt("b3", Side.BUY, 50))  # cover the short: +10 each
    assert b.positions() == []
    assert b.realized_pnl == pytest.approx(2_250.0 - 750.0 + 500.0)
    acct = b.account()
    assert acct.cash == pytest.approx(100_000 + 2_000.0)
    assert acct.equity == pytest.approx(acct.cash)
    assert len(b.poll_fills()) == 5


def test_equity_marks_positions_at_last_price() -> None:
    b = make(slippage_bps=0.0, commission_per_share=0.0, min_commission=1.0)
    b.on_price("AAPL", 100.0, 1.0)
    b.submit(mkt("b1", Side.BUY, 10))
    b.on_price("AAPL", 120.0, 2.0)
    acct = b.account()
    assert acct.cash == pytest.approx(100_000 - 1_000 - 1.0)
    assert acct.equity == pytest.approx(acct.cash + 10 * 120.0)

    b.submit(mkt("s1", Side.SELL, 30))  # long 10 -> short 20
    b.on_price("AAPL", 110.0, 3.0)
    acct = b.account()
    assert acct.equity == pytest.approx(acct.cash - 20 * 110.0)
    assert acct.equity == pytest.approx(100_000 - 2.0 + 10 * 20 + 20 * 10)


# -- idempotency ------------------------------------------------------------------------------


def test_submit_is_idempotent_by_client_order_id() -> None:
    b = free()
    b.on_price("AAPL", 100.0, 1.0)
    first = b.submit(mkt("c1", Side.BUY, 10))
    again = b.submit(mkt("c1", Side.BUY, 10))
    other = b.submit(mkt("c1", Side.SELL, 99))  # same id, different payload: still the first
    assert first == again == other
    assert len(b.poll_fills()) == 1
    assert b.positions()[0].qty == 10


def test_resting_order_resubmitted_is_not_duplicated() -> None:
    b = free()
    first = b.submit(lmt("c1", Side.BUY, 10, 50.0))
    assert b.submit(lmt("c1", Side.BUY, 10, 50.0)) == first
    assert len(b.open_orders()) == 1
    assert len(b.on_price("AAPL", 40.0, 1.0)) == 1


def test_rejection_is_remembered_too() -> None:
    b = free()
    first = b.submit(mkt("c1", Side.BUY, 0))
    assert not first.accepted
    assert b.submit(mkt("c1", Side.BUY, 10)) == first
    assert b.order("c1") is None and b.open_orders() == []


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_and_cancel_all() -> None:
    b = free()
    b.submit(lmt("a", Side.BUY, 1, 10.0))
    b.submit(lmt("b", Side.BUY, 1, 10.0, symbol="MSFT"))
    b.submit(lmt("c", Side.SELL, 1, 500.0))
    assert b.cancel("a") is True
    assert b.cancel("a") is False
    assert b.cancel("nope") is False
    assert b.cancel_all() == ["b", "c"]
    assert b.cancel_all() == []
    assert b.open_orders() == []
    assert b.on_price("AAPL", 5.0, 1.0) == [] and b.on_price("AAPL", 600.0, 2.0) == []
    for cid in "abc":
        order = b.order(cid)
        assert order is not None and order.status is OrderStatus.CANCELLED


def test_cancel_filled_order_is_false() -> None:
    b = free()
    b.on_price("AAPL", 10.0, 1.0)
    b.submit(mkt("c1", Side.BUY, 1))
    assert b.cancel("c1") is False
    order = b.order("c1")
    assert order is not None and order.status is OrderStatus.FILLED


# -- close_all_positions ----------------------------------------------------------------------


def test_close_all_positions_flattens_longs_and_shorts() -> None:
    b = make()
    b.on_price("AAPL", 100.0, 1.0)
    b.on_price("MSFT", 300.0, 1.0)
    b.submit(mkt("b1", Side.BUY, 10))
    b.submit(mkt("s1", Side.SELL, 5, symbol="MSFT"))
    b.poll_fills()
    acks = b.close_all_positions()
    assert [a.accepted for a in acks] == [True, True]
    fills = b.poll_fills()
    assert {(f.symbol, f.side, f.qty) for f in fills} == {
        ("AAPL", Side.SELL, 10),
        ("MSFT", Side.BUY, 5),
    }
    assert b.positions() == []
    assert b.close_all_positions() == []


def test_close_all_twice_before_fill_does_not_overshoot() -> None:
    b = free(bar_mode=True)
    b.submit(mkt("b1", Side.BUY, 10))
    b.on_price("AAPL", 100.0, 1.0)
    assert b.positions()[0].qty == 10
    first = b.close_all_positions()
    assert len(first) == 1 and b.close_all_positions() == []
    b.on_price("AAPL", 101.0, 2.0, open_price=100.5)
    assert b.positions() == []


def test_close_all_is_not_blocked_by_cash() -> None:
    b = free(capital=1_000.0)
    b.on_price("AAPL", 10.0, 1.0)
    b.submit(mkt("s1", Side.SELL, 100))  # cash 2000
    b.on_price("AAPL", 40.0, 2.0)  # covering now costs 4000
    [ack] = b.close_all_positions()
    assert ack.accepted and ack.status is OrderStatus.FILLED
    assert b.positions() == []
    assert b.account().cash == pytest.approx(-2_000.0)


# -- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (mkt("q0", Side.BUY, 0), "qty"),
        (mkt("qneg", Side.SELL, -5), "qty"),
        (mkt("qnan", Side.BUY, math.nan), "qty"),
        (mkt("qinf", Side.BUY, math.inf), "qty"),
        (lmt("lnone", Side.BUY, 1, None), "limit_price"),
        (lmt("lzero", Side.BUY, 1, 0.0), "limit_price"),
        (lmt("lnan", Side.SELL, 1, math.nan), "limit_price"),
        (BrokerOrder("side", "AAPL", "hold", 1, OrderType.MARKET), "side"),  # type: ignore[arg-type]
        (BrokerOrder("type", "AAPL", Side.BUY, 1, "stop"), "order type"),  # type: ignore[arg-type]
        (mkt("", Side.BUY, 1), "client_order_id"),
        (mkt("nosym", Side.BUY, 1, symbol=""), "symbol"),
        (lmt("bp", Side.BUY, 1_000, 101.0), "buying power"),
    ],
)
def test_rejections(order: BrokerOrder, reason: str) -> None:
    b = make()
    b.on_price("AAPL", 100.0, 1.0)
    ack = b.submit(order)
    assert (ack.accepted, ack.status, ack.broker_order_id) == (False, OrderStatus.REJECTED, None)
    assert reason in ack.reason
    assert b.order(order.client_order_id) is None
    assert b.poll_fills() == [] and b.positions() == []
    assert b.account().cash == 100_000.0


def test_buying_power_counts_open_buy_orders() -> None:
    b = free(capital=10_000.0)
    assert b.submit(lmt("a", Side.BUY, 60, 100.0)).accepted
    assert b.account().buying_power == pytest.approx(4_000.0)
    assert not b.submit(lmt("b", Side.BUY, 60, 100.0)).accepted
    assert b.submit(lmt("c", Side.BUY, 40, 100.0)).accepted
    b.cancel("a")
    assert b.account().buying_power == pytest.approx(6_000.0)


def test_market_buy_without_price_is_rejected_at_fill_if_cash_short() -> None:
    b = free(capital=1_000.0)
    assert b.submit(mkt("c1", Side.BUY, 100)).accepted  # no price yet: cannot check
    assert b.on_price("AAPL", 20.0, 1.0) == []
    order = b.order("c1")
    assert order is not None and order.status is OrderStatus.REJECTED
    assert b.account().cash == 1_000.0 and b.positions() == []


def test_bad_prices_raise_without_changing_state() -> None:
    b = free()
    b.submit(mkt("c1", Side.BUY, 1))
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            b.on_price("AAPL", bad, 1.0)
        with pytest.raises(ValueError):
            b.on_price("AAPL", 10.0, 1.0, open_price=bad)
    assert b.last_price("AAPL") is None
    assert len(b.open_orders()) == 1


def test_constructor_validates() -> None:
    for kw in ({"max_fill_fraction": 0.0}, {"max_fill_fraction": 1.5}, {"capital": -1.0}):
        with pytest.raises(ValueError):
            PaperBroker(**kw)  # type: ignore[arg-type]


# -- bar mode: no look-ahead ------------------------------------------------------------------


def test_bar_mode_market_order_fills_at_next_open_not_current_close() -> None:
    b = make(bar_mode=True, commission_per_share=0.0, min_commission=0.0)
    b.on_price("AAPL", 100.0, 1.0, open_price=99.0)  # bar N closes at 100
    ack = b.submit(mkt("c1", Side.BUY, 10))  # decided on bar N's close
    assert ack.status is OrderStatus.ACCEPTED
    assert b.poll_fills() == []
    [fill] = b.on_price("AAPL", 105.0, 2.0, open_price=101.0)  # bar N+1
    assert fill.price == pytest.approx(101.0 * (1 + SLIP))
    assert fill.ts == 2.0


def test_bar_mode_marketable_limit_does_not_fill_on_stale_close() -> None:
    b = free(bar_mode=True)
    b.on_price("AAPL", 99.0, 1.0)
    b.submit(lmt("c1", Side.BUY, 10, 100.0))  # would cross the current close of 99
    assert b.poll_fills() == []
    [fill] = b.on_price("AAPL", 99.5, 2.0, open_price=102.0)  # open misses, close hits
    assert fill.price == 99.5
    order = b.order("c1")
    assert order is not None and order.status is OrderStatus.FILLED


def test_bar_mode_limit_checks_open_then_close() -> None:
    b = free(bar_mode=True)
    b.on_price("AAPL", 99.0, 1.0)
    b.submit(lmt("open", Side.BUY, 1, 100.0))
    b.submit(lmt("close", Side.BUY, 1, 100.0))
    b.cancel("close")
    [at_open] = b.on_price("AAPL", 95.0, 2.0, open_price=98.0)
    assert at_open.price == 98.0

    b.submit(lmt("close2", Side.BUY, 1, 100.0))
    [at_close] = b.on_price("AAPL", 99.5, 3.0, open_price=102.0)  # open misses, close hits
    assert at_close.price == 99.5

    b.submit(lmt("miss", Side.BUY, 1, 90.0))
    assert b.on_price("AAPL", 95.0, 4.0, open_price=96.0) == []


def test_bar_mode_partial_fills_one_chunk_per_bar() -> None:
    b = free(bar_mode=True, max_fill_fraction=0.5)
    b.on_price("AAPL", 100.0, 1.0)
    b.submit(mkt("c1", Side.BUY, 10))
    assert [f.price for f in b.on_price("AAPL", 104.0, 2.0, open_price=101.0)] == [101.0]
    assert [f.price for f in b.on_price("AAPL", 106.0, 3.0, open_price=105.0)] == [105.0]


# -- determinism ------------------------------------------------------------------------------


def _session(b: PaperBroker) -> list[BrokerFill]:
    fills: list[BrokerFill] = []
    b.submit(mkt("x", Side.BUY, 10))
    fills += b.on_price("AAPL", 10.0, 1.0)
    b.submit(lmt("y", Side.SELL, 10, 12.0))
    for i, p in enumerate((11.0, 12.5, 13.0, 14.0)):
        fills += b.on_price("AAPL", p, 2.0 + i)
    return fills + b.poll_fills()


def test_replay_gives_same_ids_and_fills() -> None:
    a = _session(make(max_fill_fraction=0.5, bar_mode=True))
    c = _session(make(max_fill_fraction=0.5, bar_mode=True))
    assert a == c
    assert [f.fill_id for f in a] == ["paper-1-1", "paper-1-2", "paper-2-1", "paper-2-2"]


def test_id_prefix() -> None:
    b = free(id_prefix="bt7")
    assert b.submit(mkt("x", Side.BUY, 1)).broker_order_id == "bt7-1"


# -- property: fills never exceed qty; cash follows fills exactly ----------------------------

_SYMBOLS = ("AAPL", "MSFT")
_price = st.floats(min_value=1.0, max_value=200.0, allow_nan=False)
_op = st.one_of(
    st.tuples(
        st.just("submit"),
        st.sampled_from(_SYMBOLS),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.one_of(st.integers(1, 400).map(float), st.floats(0.01, 50.0)),
        st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
        _price,
        st.booleans(),  # resubmit an earlier id instead of a new one
    ),
    st.tuples(st.just("price"), st.sampled_from(_SYMBOLS), _price, st.one_of(st.none(), _price)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("cancel_all")),
    st.tuples(st.just("close_all")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(_op, max_size=40),
    bar_mode=st.booleans(),
    fraction=st.sampled_from([1.0, 0.5, 0.3]),
    capital=st.sampled_from([5_000.0, 100_000.0]),
)
def test_property_fills_bounded_and_cash_consistent(
    ops: list[tuple[Any, ...]], bar_mode: bool, fraction: float, capital: float
) -> None:
    b = make(capital=capital, bar_mode=bar_mode, max_fill_fraction=fraction)
    pairs: list[tuple[BrokerFill, int | None]] = []  # each fill with the price step that made it
    cids: list[str] = []
    submitted_at: dict[str, int] = {}  # cid -> index of the last price update before submit
    step = 0
    for op in ops:
        if op[0] == "submit":
            _, sym, side, qty, otype, px, reuse = op
            cid = cids[len(cids) // 2] if reuse and cids else f"o{len(cids)}"
            limit = px if otype is OrderType.LIMIT else None
            first = b.submit(BrokerOrder(cid, sym, side, qty, otype, limit))
            assert b.submit(BrokerOrder(cid, sym, side, qty, otype, limit)) == first
            if cid not in submitted_at:
                cids.append(cid)
                submitted_at[cid] = step
        elif op[0] == "price":
            step += 1
            _, sym, px, open_px = op
            pairs += [(f, step) for f in b.on_price(sym, px, float(step), open_price=open_px)]
        elif op[0] == "cancel":
            if cids:
                b.cancel(cids[op[1] % len(cids)])
        elif op[0] == "cancel_all":
            b.cancel_all()
        else:
            for ack in b.close_all_positions():
                cids.append(ack.client_order_id)
                submitted_at[ack.client_order_id] = step
        pairs += [(f, None) for f in b.poll_fills()]

    assert len({f.fill_id for f, _ in pairs}) == len(pairs)  # no fill reported twice

    per_order: dict[str, float] = defaultdict(float)
    for f, at in pairs:
        per_order[f.client_order_id] += f.qty
        assert f.qty > 0 and f.fee >= 0
        if bar_mode:  # no look-ahead: only prices fed after the order was sent
            assert at is not None and at > submitted_at[f.client_order_id]
    for cid, total in per_order.items():
        order = b.order(cid)
        assert order is not None
        assert total <= order.qty * (1 + 1e-9)
        assert total == pytest.approx(order.filled_qty)
        assert (order.status is OrderStatus.FILLED) == math.isclose(total, order.qty)

    acct: Account = b.account()
    flow = sum((f.qty if f.side is Side.BUY else -f.qty) * f.price for f, _ in pairs)
    fees = sum(f.fee for f, _ in pairs)
    assert acct.cash == pytest.approx(capital - flow - fees, abs=1e-6)

    net: dict[str, float] = defaultdict(float)
    for f, _ in pairs:
        net[f.symbol] += f.qty if f.side is Side.BUY else -f.qty
    held = {p.symbol: p.qty for p in b.positions()}
    for sym in _SYMBOLS:
        assert held.get(sym, 0.0) == pytest.approx(net[sym], abs=1e-6)
    marks = sum(p.qty * (b.last_price(p.symbol) or p.avg_price) for p in b.positions())
    assert acct.equity == pytest.approx(acct.cash + marks, abs=1e-6)
