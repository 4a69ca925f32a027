"""Property: random streams of prices, VIX readings, decisions, fills, mode changes,
broker price skews and verifier answers never produce an order that breaks a posture
limit, the position cap, the order rate, the daily loss limit, the mismatch gate or a
mode rule, and positions and cash always reconcile with the fills."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_actors.brokers import BrokerOrder
from aegis_actors.context import posture_params
from aegis_actors.execution.mismatch import Tier, tier
from aegis_actors.messages import (
    Action,
    ModeChange,
    Posture,
    PriceConfirmation,
    RequestMode,
    TradingMode,
)
from aegis_actors.posture import evaluate
from aegis_actors.settings import Settings
from aegis_actors.watchdog.modes import ModeMachine
from tests.execution_harness import Harness

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "SPY"]
CAPITAL = 100_000.0
SETTINGS = Settings(
    risk={"max_orders_per_minute": 6, "daily_loss_limit_pct": 0.05, "minute_loss_limit_pct": 0.1}
)

decide = st.tuples(
    st.just("decide"),
    st.sampled_from(SYMBOLS),
    st.sampled_from([Action.BUY] * 3 + [Action.SELL] * 2 + [Action.CLOSE, Action.HOLD]),
    st.floats(0.05, 1.0),
    st.sampled_from([None, -0.01, 0.0, 0.01]),
    st.sampled_from(list(Posture)),
)
moves = st.one_of(st.floats(-0.03, 0.03), st.floats(-0.03, 0.03), st.floats(-0.25, 0.1))
tick = st.tuples(st.just("tick"), st.sampled_from(SYMBOLS), moves)
M = TradingMode
steps = st.one_of(
    *[decide] * 6,
    *[tick] * 5,
    st.tuples(st.just("vix"), st.floats(8.0, 40.0)),
    st.tuples(
        st.just("mode"),
        st.sampled_from([M.NORMAL] * 4 + [M.LIMITED, M.SAFE, M.HALTED]),
        st.sampled_from([True, True, True, False]),
    ),
    st.tuples(st.just("time"), st.floats(0.1, 30.0)),
    st.tuples(
        st.just("skew"),
        st.sampled_from(SYMBOLS),
        st.sampled_from([1.0] * 4 + [1.004, 1.01, 1.01, 1.03]),
    ),
    st.tuples(st.just("confirm"), st.booleans()),
    st.tuples(st.just("crash"), st.floats(-0.2, -0.02)),
)


class Checker:
    """Independent of the core's own bookkeeping: what may reach the broker, and when."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.sent_at: list[float] = []
        self.violations: list[str] = []

    def __call__(self, order: BrokerOrder) -> None:
        h, core = self.h, self.h.core
        now = h.clock.now()
        ledger = h.ports.ledger.get(order.client_order_id)
        if ledger is None:
            return self.bad(f"{order.client_order_id} sent before it was written")
        mode = core.mode
        if ledger.intent == "entry":
            if mode is not TradingMode.NORMAL:
                self.bad(f"entry sent in mode {mode}")
            posture = h.ports.posture or Posture.GUERRILLA
            params = posture_params(h.settings, posture)
            equity = h.broker.account().equity
            price = max(core.prices.get(order.symbol, 100.0), order.limit_price or 0.0)
            if order.qty * price > params.entry_size * equity * (1 + 1e-6):
                self.bad(f"entry {order.qty}x{price} over {posture} size of {equity:.0f}")
            entries = {
                o.client_order_id
                for o in h.broker.open_orders()
                if h.ports.ledger.get(o.client_order_id) is not None
                and h.ports.ledger[o.client_order_id].intent == "entry"
            }
            held = sum(1 for p in h.broker.positions() if p.qty != 0)
            if held + len(entries) >= params.max_positions:
                self.bad(f"{held}+{len(entries)} open, {posture} allows {params.max_positions}")
            if (CAPITAL - equity) / CAPITAL * 100 >= h.settings.risk.daily_loss_limit_pct:
                self.bad(f"entry while down {(CAPITAL - equity) / CAPITAL:.2%} today")
        elif not mode.allows_exits():
            self.bad(f"exit sent in mode {mode}")
        self.sent_at.append(now)
        recent = [t for t in self.sent_at if now - t < 60.0]
        if len(recent) > h.settings.risk.max_orders_per_minute:
            self.bad(f"{len(recent)} orders within a minute")
        bp, fp = h.broker.last_price(order.symbol), core.prices.get(order.symbol)
        if bp is not None and fp is not None:
            t = tier(bp, fp, h.settings.risk.mismatch_ignore_pct, h.settings.risk.mismatch_halt_pct)
            if t is Tier.HALT:
                self.bad(f"order on {order.symbol} over the mismatch halt line")
            if t is Tier.CONFIRM and not (
                core.guard.is_confirmed(order.symbol, now) or mode is TradingMode.SAFE
            ):
                self.bad(f"order on {order.symbol} without the verifier's confirmation")

    def bad(self, why: str) -> None:
        self.violations.append(why)


def reconciles(h: Harness) -> None:
    fills = h.fills()
    assert len({f.fill_id for f in fills}) == len(fills), "a fill recorded twice"
    assert all(f.client_order_id in h.ports.ledger for f in fills), "a fill of an unwritten order"
    cash = CAPITAL - sum((f.qty if f.side == "buy" else -f.qty) * f.price + f.fee for f in fills)
    assert abs(h.broker.account().cash - cash) < 1e-6, "cash does not match the fills"
    qty: dict[str, float] = {}
    for f in fills:
        qty[f.symbol] = qty.get(f.symbol, 0.0) + (f.qty if f.side == "buy" else -f.qty)
    broker = {p.symbol: p.qty for p in h.broker.positions()}
    assert {s: q for s, q in qty.items() if abs(q) > 1e-9} == broker, "positions vs fills"
    assert {s: p.qty for s, p in h.core.positions.items()} == broker, "execution vs broker"
    for p in h.broker.positions():
        assert abs(h.core.positions[p.symbol].avg_price - p.avg_price) < 1e-6, "average price"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=40, max_size=120))
def test_no_order_breaks_a_rule_and_books_reconcile(stream: list[tuple[Any, ...]]) -> None:
    h = Harness(SETTINGS, quiet=True, capital=CAPITAL)
    check = Checker(h)
    h.broker.checker = check
    modes = ModeMachine()
    prices = dict.fromkeys(SYMBOLS, 100.0)
    seen_requests = 0
    for step in stream:
        kind = step[0]
        if kind == "tick":
            prices[step[1]] = round(prices[step[1]] * (1 + step[2]), 4)
            h.tick(step[1], prices[step[1]])
        elif kind == "crash":  # every symbol gaps down at once: losses for the loss limits
            for symbol in SYMBOLS:
                prices[symbol] = round(prices[symbol] * (1 + step[1]), 4)
                h.tick(symbol, prices[symbol])
        elif kind == "vix":
            current = h.ports.posture or Posture.GUERRILLA
            h.ports.posture = evaluate(step[1], current, 15.0, 25.0, 1.0)[0]
        elif kind == "decide":
            _, symbol, action, size, offset, stale_posture = step
            limit = None if offset is None else round(prices[symbol] * (1 + offset), 4)
            h.decide(symbol, action, size, posture=stale_posture, limit=limit, ref=prices[symbol])
        elif kind == "mode":
            move = modes.request(step[1], operator=step[2])
            for m in move.steps if move.ok else ():
                h.core.mode_change(ModeChange(old=move.old, new=m, reason="t", ts=h.clock.t))
        elif kind == "time":
            h.advance(step[1])
        elif kind == "skew":
            h.broker.skew[step[1]] = step[2]
        elif kind == "confirm" and h.core.confirm_asked:
            symbol, (rid, _) = next(iter(h.core.confirm_asked.items()))
            h.core.price_confirmed(
                PriceConfirmation(request_id=rid, symbol=symbol, approve=step[1], reason="", ts=0)
            )
        # the watchdog's side: automatic mode requests from execution move the machine
        requests = h.ports.of(RequestMode)
        for req in requests[seen_requests:]:
            move = modes.request(req.target, operator=False)
            for m in move.steps if move.ok else ():
                h.core.mode_change(ModeChange(old=move.old, new=m, reason="t", ts=h.clock.t))
        seen_requests = len(requests)
        assert not check.violations, check.violations
        reconciles(h)


book_orders = st.lists(
    st.tuples(
        st.sampled_from(["live", "unknown", "awaiting"]),
        st.sampled_from(SYMBOLS[:3]),
        st.sampled_from(["entry", "exit"]),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(book_orders, st.sampled_from(SYMBOLS[:4]))
def test_entry_scan_is_working_entry_and_entries_in_flight(
    orders: list[tuple[str, str, str]], symbol: str
) -> None:
    """The one pass an entry decision makes over the book answers what the two reads it
    replaces (`working_entry`, `entries_in_flight`) answer, on any book."""
    from aegis_actors.execution.book import Live, OrderBook, Pending
    from aegis_actors.messages import Order, OrderType, Side

    book = OrderBook()
    for i, (where, sym, intent) in enumerate(orders):
        order = Order(
            client_order_id=f"c{i}",
            decision_id=f"d{i}",
            event_id=f"e{i}",
            symbol=sym,
            side=Side.BUY,
            qty=1.0,
            order_type=OrderType.MARKET,
            intent=intent,
            created_at=0.0,
        )
        if where == "awaiting":
            book.awaiting.setdefault(sym, []).append(Pending(order, None, ""))
        else:
            getattr(book, where)[order.client_order_id] = Live(order)
    assert book.entry_scan(symbol) == (book.working_entry(symbol), book.entries_in_flight())
