"""The execution core: decisions -> orders, prices -> fills, exits and mode rules.

No actor in here: side effects go through `Ports` (tell a named actor, ask one, write
ahead, read the posture in force, publish to the cache), so the property tests drive the
very code the actor runs. It is split the way NautilusTrader splits risk, execution and
portfolio: the gate (gate.py: pre-trade risk + data mismatch, typed verdicts), the order
book (book.py: live / unknown / awaiting, each with its lifecycle), positions
(positions.py), exits (exits.py), the mode rules (mode_rules.py), orders held for the
verifier (confirm.py) and the sweep (sweep.py); this module wires them. `submit` is the only way to
the broker's `submit`, entries and exits alike, and it answers with a typed result
(results.py), never a string to parse.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from aegis_actors.brokers import Broker, BrokerError, BrokerFill, BrokerOrder
from aegis_actors.context import posture_params
from aegis_actors.execution import confirm, mode_rules, sweep
from aegis_actors.execution.book import Live, OrderBook, Pending
from aegis_actors.execution.exits import exit_order, exit_reason, pnl_pct
from aegis_actors.execution.gate import Cleared, Gate, HoldForVerifier, MismatchHalt
from aegis_actors.execution.lifecycle import Filled
from aegis_actors.execution.mismatch import Tier, diff_pct
from aegis_actors.execution.positions import Held, book_fill, set_stops, stops_for
from aegis_actors.execution.quality import ExecutionQuality
from aegis_actors.execution.results import (
    Awaiting,
    Duplicate,
    OrderDenied,
    OrderFailed,
    Placed,
    Submitted,
    in_flight,
)
from aegis_actors.execution.risk import client_order_id
from aegis_actors.hush import Hush
from aegis_actors.messages import (
    DECISION,
    DONE,
    OPEN_STATUSES,
    ORDER_ACCEPTED,
    Action,
    Alert,
    AlertLevel,
    Decision,
    EventDone,
    Fill,
    ModeChange,
    Msg,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Outcome,
    PositionClosed,
    PositionUpdate,
    Posture,
    PriceConfirmation,
    RecordFill,
    ReplyT,
    RequestMode,
    Side,
    Tick,
    TradingMode,
    WriteAhead,
    WriteAheadAck,
)
from aegis_actors.metrics import Metrics
from aegis_actors.runtime import MARKET, POSTURE, STORE, WATCHDOG
from aegis_actors.settings import Settings

__all__ = ["ExecutionCore", "Held", "Live", "Pending", "Ports", "fill_message", "stops_for"]

_EPS = 1e-9
_CLOSE, _BUY = Action.CLOSE, Action.BUY
_ENTRIES = (Action.BUY, Action.SELL)
_REFUSED = Outcome.REFUSED
_HALT = Tier.HALT  # read per market print
_FRESH_EXIT_RETRIES = 8  # fresh ids tried in a row for an exit the ledger already holds


class Ports(Protocol):
    """What the core needs from its actor."""

    def send(self, name: str, message: Msg) -> bool: ...

    def ask(self, name: str, message: Msg, timeout: float, reply: type[ReplyT]) -> ReplyT: ...

    def write_ahead(self, order: Order) -> WriteAheadAck:
        """new once the order is durable, spooled (an exit, store down), duplicate if it
        already was, else why not (conflict, expired, error, with the detail)."""
        ...

    def current_posture(self) -> Posture | None: ...

    def run_stopping(self) -> bool:
        """True once the run is stopping: no order may leave any more."""
        ...

    def recent_price(self, symbol: str) -> float | None:
        """The last price seen for `symbol` before this start (the cache), if any."""
        ...

    def publish(self, positions: dict[str, Any], account: dict[str, Any]) -> None: ...


class ExecutionCore:
    def __init__(
        self,
        broker: Broker,
        settings: Settings,
        now: Callable[[], float],
        ports: Ports,
        metrics: Metrics,
        log: Any,
        mode: TradingMode = TradingMode.NORMAL,
        run_id: str = "",
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.now = now
        self.ports = ports
        self.metrics = metrics
        self.log = log
        self.mode = mode
        self.run_id = run_id
        self.positions: dict[str, Held] = {}
        self.book = OrderBook()
        self.stats = {"orders": 0, "fills": 0, "refused": 0, "rejected": 0, "errors": 0}
        self.refusal_logged = ""  # the order `refused` just logged: `finish` says it once
        self.quality = ExecutionQuality()
        self.realised = 0.0
        self.prices: dict[str, float] = {}
        acct = broker.account()
        self.equity, self.cash = acct.equity, acct.cash
        self.gate = Gate(settings.risk, self.equity, now())
        self.hush = Hush(burst=5)
        self._refused: dict[str, Any] = {}  # check -> its counter child

    # The book's and the gate's parts, by the names tests and status have always used.
    @property
    def live(self) -> dict[str, Live]:
        return self.book.live

    @property
    def unknown(self) -> dict[str, Live]:
        return self.book.unknown

    @property
    def awaiting(self) -> dict[str, list[Pending]]:
        return self.book.awaiting

    @property
    def confirm_asked(self) -> dict[str, tuple[str, float]]:
        return self.book.confirm_asked

    @property
    def guard(self) -> Any:
        return self.gate.guard

    @property
    def risk(self) -> Any:
        return self.gate.risk

    # -- decisions -> orders ---------------------------------------------------------

    def decide(self, d: Decision) -> None:
        now = self.now()
        price = self.prices.get(d.symbol) or d.reference_price
        held = self.positions.get(d.symbol)
        action = d.action
        if action is _CLOSE:
            if held is None or held.qty == 0 or held.exiting:
                return self.done(d, _REFUSED, "nothing to close")
            order = exit_order(held, d.decision_id, d.event_id, now)
            held.exiting = order.client_order_id
            result = self.submit(order, "close", d)
            if not in_flight(result):
                held.exiting = ""
            return self.finish(d, order, result)
        if action not in _ENTRIES:  # members off the module: cheaper than off the class
            return self.done(d, Outcome.HOLD, "hold")
        holding = held is not None and held.qty != 0
        if held is not None and holding:
            if not (d.reverse and (held.qty > 0) != (action is _BUY)):
                return self.done(d, _REFUSED, "already holding; one position per symbol")
            if held.exiting:
                return self.done(d, _REFUSED, "an exit is already working on it")
        working, entries = self.book.entry_scan(d.symbol)
        if working:
            return self.done(d, _REFUSED, "an entry order is already working on it")
        if held is not None and holding:
            closing = self.reverse(d, held, now)
            if not closing:
                return None
            return self.enter(d, now, price, closing)  # the reversal moved the book
        self.enter(d, now, price, "", entries)

    def reverse(self, d: Decision, held: Held, now: float) -> str:
        """The close half of a reversal: the held position's exit, sent first so the
        broker fills it before the entry. Its client order id, or "" when it was not
        placed (the decision is then finished as a close would be, with no entry)."""
        order = exit_order(held, d.decision_id, d.event_id, now)
        held.exiting = order.client_order_id
        result = self.submit(order, "reverse", d)
        if not in_flight(result):
            held.exiting = ""
        if not isinstance(result, Placed):
            self.finish(d, order, result)
            return ""
        self.log.bind(event_id=d.event_id).info(
            f"exit {order.side} {order.symbol} x{order.qty} (reversal): {result}"
        )
        return order.client_order_id

    def enter(
        self, d: Decision, now: float, price: float, closing: str, entries: int | None = None
    ) -> None:
        """An entry sized by the posture in force; `closing` is the exit of the position
        it reverses (already working: the decision is ordered whatever the entry's fate).
        `entries`: the book's entries in flight, when the caller just counted them."""
        posture = self.ports.current_posture() or d.posture
        if posture is not d.posture:
            self.log.bind(event_id=d.event_id).info(
                "decision made under {}, posture now {}: sized by {}", d.posture, posture, posture
            )
        params = posture_params(self.settings, posture)
        cheap = self.risk.precheck(
            mode=self.mode, params=params, open_positions=self.open_count(d.symbol, entries)
        )
        if cheap is not None:  # cheap checks first: no account call, no order built
            return self.refuse(d, cheap.check, cheap.why, closing)
        try:
            self.equity = self.broker.account().equity
        except BrokerError as exc:
            self.metrics.errors.labels("broker").inc()
            self.log.bind(event_id=d.event_id).error("no entry: account unavailable: {}", exc)
            if closing:
                return self.done(d, Outcome.ORDERED, f"{closing}; no entry: {exc}")
            return self.done(d, Outcome.FAILED, f"broker unavailable: {exc}")
        self.risk.mark_equity(self.equity, now)
        otype = self.gate.mix[posture].choose(params.limit_ratio)
        limit = round(d.limit_price or price, 4) if otype is OrderType.LIMIT else None
        worst = max(price, limit or price)
        qty = math.floor(params.entry_size * d.size_fraction * self.equity / worst)
        if qty < 1:
            return self.refuse(
                d, "size", f"entry size buys less than one share at {worst}", closing
            )
        order = Order(
            client_order_id=client_order_id(d.decision_id, "entry"),
            decision_id=d.decision_id,
            event_id=d.event_id,
            symbol=d.symbol,
            side=Side.BUY if d.action is Action.BUY else Side.SELL,
            qty=float(qty),
            order_type=otype,
            limit_price=limit,
            stop_loss=d.stop_loss,
            take_profit=d.take_profit,
            intent="entry",
            posture=posture,
            created_at=now,
        )
        # posture and equity were read just above, nothing in between: submit reuses them
        fresh = (posture, self.equity)
        self.finish(d, order, self.submit(order, "", d, fresh=fresh), closing)

    def finish(self, d: Decision, order: Order, result: Submitted, closing: str = "") -> None:
        if not (isinstance(result, OrderDenied) and self.refusal_logged == order.client_order_id):
            # Formatted here, not by the logger: the same text, no format pass per line.
            self.log.bind(event_id=d.event_id).info(
                f"{order.intent} {order.side} {order.symbol} x{order.qty} "
                f"({order.order_type}): {result}"
            )
        if isinstance(result, Awaiting):
            return  # finished when the verifier answers
        if closing and not isinstance(result, Placed):  # the close went: ordered all the same
            self.done(d, Outcome.ORDERED, f"{closing}; {result}", accepted=self.now())
        elif isinstance(result, Placed):
            self.done(d, Outcome.ORDERED, result.client_order_id, accepted=self.now())
        elif isinstance(result, Duplicate):
            self.done(d, Outcome.REFUSED, "duplicate decision: order already exists")
        elif isinstance(result, OrderFailed):
            self.done(d, Outcome.FAILED, str(result))
        else:
            self.done(d, Outcome.REFUSED, str(result))

    def submit(
        self,
        order: Order,
        reason: str,
        decision: Decision | None = None,
        *,
        fresh: tuple[Posture, float] | None = None,
    ) -> Submitted:
        """The one road to the broker: the gate (risk, then the mismatch tiers), then
        `place` (write ahead, send). `fresh`: the posture in force and the equity the
        caller read from the cache and the broker a moment ago (an entry just sized),
        so they are not read twice for one order."""
        if self.ports.run_stopping():
            return self.denied(order, OrderDenied("stopping", "the run is stopping"))
        now = self.now()
        # Limits are those of the posture in force now (an order held for the verifier may
        # have been sized under another one); exits keep their entry's posture for stops.
        if fresh is not None:
            posture = fresh[0]
        else:
            posture = self.ports.current_posture() or order.posture or Posture.DEFENSIVE
        price = self.prices.get(order.symbol) or order.limit_price
        if price is None and decision is not None:
            price = decision.reference_price
        if price is not None and order.limit_price is not None:
            price = max(price, order.limit_price)  # size is held at the worst price it may pay
        # Capital now, not when the order was sized: one held for the verifier may be
        # released after the market moved (found by the property test).
        if fresh is not None:
            self.equity = fresh[1]  # read and marked by the caller this instant
        else:
            try:
                self.equity = self.broker.account().equity
                self.risk.mark_equity(self.equity, now)
            except BrokerError as exc:
                if order.intent == "entry":
                    denial = OrderDenied("account", f"account unavailable: {exc}")
                    return self.denied(order, denial)
        verdict = self.gate.check(
            order,
            mode=self.mode,
            params=posture_params(self.settings, posture),
            price=price or 0.0,
            equity=self.equity,
            open_positions=self.open_count(order.symbol if order.intent == "entry" else ""),
            now=now,
            broker_price=self.broker.last_price(order.symbol),
            feed_price=self.prices.get(order.symbol),
            liquidation=reason == "liquidation",
        )
        if isinstance(verdict, OrderDenied):
            return self.denied(order, verdict)
        if isinstance(verdict, MismatchHalt):
            self.halt_for_mismatch(verdict.symbol, verdict.broker_price, verdict.feed_price)
            denial = OrderDenied("mismatch", "broker and feed prices over the halt line")
            return self.denied(order, denial)
        if isinstance(verdict, HoldForVerifier):
            self.hold_for_verifier(Pending(order, decision, reason), now)
            return Awaiting(order.symbol)
        assert isinstance(verdict, Cleared)
        self.gate.record_entry(order)
        return self.place(order, reason, decision)

    def denied(self, order: Order, denial: OrderDenied) -> OrderDenied:
        self.stats["refused"] += 1
        self.refused_metric(denial.check).inc()
        self.refusal_logged = order.client_order_id  # `finish` does not say it again
        hushed = self.hush.allow(denial.check, self.now())
        if hushed is not None:  # a few lines a minute per check; all are counted
            self.log.bind(event_id=order.event_id or None).warning(
                "{} {} {} x{} refused by {} check: {}{}",
                order.intent,
                order.side,
                order.symbol,
                order.qty,
                denial.check,
                denial.reason,
                f" ({hushed} more refused by it not logged)" if hushed else "",
            )
        return denial

    def place(
        self, order: Order, reason: str = "", decision: Decision | None = None, *, retry: int = 0
    ) -> Submitted:
        """Write ahead (to the durable store, or for an exit while it is down to the local
        spool), then send."""
        try:
            written = self.ports.write_ahead(order)
        except Exception as exc:
            written = WriteAheadAck(status=WriteAhead.ERROR, detail=f"store unreachable: {exc}")
        if written.status is WriteAhead.DUPLICATE:
            if order.intent != "exit":
                return Duplicate(order.client_order_id)
            return self.written_before(order, reason, decision, retry)
        if written.status is WriteAhead.CONFLICT:
            return self.not_written(order, f"write-ahead {written}")
        if not written.written:  # (spooled: an exit, written ahead locally)
            self.ports.send(
                WATCHDOG,
                RequestMode(
                    target=TradingMode.LIMITED, reason="durable store unavailable for orders"
                ),
            )
            return self.not_written(order, f"write-ahead failed ({written})")
        return self.send_to_broker(order, reason, decision)

    def not_written(self, order: Order, why: str) -> OrderFailed:
        self.stats["errors"] += 1
        self.metrics.order("not_written")
        self.log.bind(event_id=order.event_id or None).error(
            "order {} NOT sent: {}", order.client_order_id, why
        )
        return OrderFailed(why)

    def send_to_broker(self, order: Order, reason: str, decision: Decision | None) -> Submitted:
        now = self.now()
        started = decision.stamps.get(DECISION, order.created_at) if decision else order.created_at
        self.risk.record_sent(now)
        self.stats["orders"] += 1
        live = Live(order, reason=reason)
        try:
            ack = self.broker.submit(
                BrokerOrder(
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    side=order.side,
                    qty=order.qty,
                    order_type=order.order_type,
                    limit_price=order.limit_price,
                )
            )
        except BrokerError as exc:
            # The broker may or may not hold it: the ledger says so, and the sweep asks.
            self.stats["errors"] += 1
            self.quality.error()
            self.metrics.order(OrderStatus.UNKNOWN)
            self.book.unknown[order.client_order_id] = live
            self.record(
                OrderUpdate(
                    client_order_id=order.client_order_id,
                    status=OrderStatus.UNKNOWN,
                    ts=self.now(),
                    error=str(exc),
                )
            )
            self.log.bind(event_id=order.event_id or None).error(
                "order {} state unknown after broker error: {}", order.client_order_id, exc
            )
            return OrderFailed(str(exc))
        status = ack.status if ack.accepted else OrderStatus.REJECTED
        self.metrics.order(status)
        acked = self.now()
        self.record(
            OrderUpdate(
                client_order_id=order.client_order_id,
                status=status,
                ts=acked,
                broker_order_id=ack.broker_order_id,
                error=ack.reason or None,
            )
        )
        if not ack.accepted:
            self.stats["rejected"] += 1
            self.quality.reject()
            return OrderDenied("broker", f"rejected ({ack.reason})")
        self.quality.accept((acked - started) * 1000.0)
        self.book.live[order.client_order_id] = live
        self.apply_fills(self.broker.poll_fills())
        return Placed(order.client_order_id)

    def written_before(
        self, order: Order, reason: str, decision: Decision | None, retry: int
    ) -> Submitted:
        """An exit whose id the ledger already holds: follow it if the broker works it;
        if the broker never saw it (or it ended unfilled), retry under a fresh id so a
        position is never left without its exit (issue 11, defect 2)."""
        coid = order.client_order_id
        try:
            at = self.broker.order(coid)
        except BrokerError:
            self.book.unknown[coid] = Live(order, reason=reason)  # the sweep asks again
            return Duplicate(coid)
        if at is not None and (at.status in OPEN_STATUSES or at.filled_qty > _EPS):
            if at.status in OPEN_STATUSES:
                self.book.live[coid] = Live(order, filled=at.filled_qty, reason=reason)
            return Duplicate(coid)
        held = self.positions.get(order.symbol)
        if held is None or held.qty == 0:
            return Duplicate(coid)
        if retry >= _FRESH_EXIT_RETRIES:
            return OrderFailed(f"{retry} fresh exit ids for {order.symbol} all taken")
        fresh = exit_order(held, order.decision_id, order.event_id, self.now())
        self.log.bind(event_id=order.event_id or None).warning(
            "exit {} for {} was written before but never worked at the broker: retried as {}",
            coid,
            order.symbol,
            fresh.client_order_id,
        )
        held.exiting = fresh.client_order_id
        return self.place(fresh, reason, decision, retry=retry + 1)

    def refuse(self, d: Decision, check: str, why: str, closing: str = "") -> None:
        self.stats["refused"] += 1
        self.refused_metric(check).inc()
        hushed = self.hush.allow(check, self.now())
        if hushed is not None:  # a few lines a minute per check; all are counted
            self.log.bind(event_id=d.event_id).warning(
                "order refused by {} check: {}{}",
                check,
                why,
                f" ({hushed} more refused by it not logged)" if hushed else "",
            )
        if closing:  # a reversal's entry refused: its close is working all the same
            self.done(d, Outcome.ORDERED, f"{closing}; entry refused: {check}: {why}")
            return
        self.done(d, _REFUSED, f"{check}: {why}")

    def done(
        self, d: Decision, outcome: Outcome, detail: str, *, accepted: float | None = None
    ) -> None:
        """Tell the gateway the event is over; `accepted`: when its order was accepted
        (stamped here rather than on a copy of the decision)."""
        stamps = {**d.stamps, ORDER_ACCEPTED: accepted} if accepted is not None else d.stamps
        done = EventDone.trusted(  # built here of typed values: not validated again
            event_id=d.event_id,
            stamps={**stamps, DONE: float(self.now())},
            symbol=d.symbol,
            outcome=outcome,
            detail=str(detail),
        )
        self.ports.send(MARKET, done)  # the gateway frees the symbol and tells the watchdog

    def refused_metric(self, check: str) -> Any:
        """The refusals counter's child for `check`, looked up once (a labels() call
        costs a lock and a tuple per refusal; most spine decisions are refused)."""
        child = self._refused.get(check)
        if child is None:
            child = self._refused[check] = self.metrics.refused.labels(check)
        return child

    def record(self, msg: Msg) -> None:
        self.ports.send(STORE, msg)

    # -- data mismatch (SPEC 4.3) ----------------------------------------------------

    def halt_for_mismatch(self, symbol: str, broker_price: float, feed_price: float) -> None:
        if not self.guard.first_halt(symbol):
            return
        pct = diff_pct(broker_price, feed_price)
        why = f"data mismatch on {symbol}: broker {broker_price} vs feed {feed_price} ({pct:.2f}%)"
        self.log.critical("{}; trading halted, manual check required", why)
        self.metrics.errors.labels("data_mismatch").inc()
        now = self.now()
        self.ports.send(
            WATCHDOG,
            Alert(
                alert_id=f"mismatch-{symbol}-{uuid.uuid4().hex[:8]}",
                level=AlertLevel.SEVERE,
                kind="data_mismatch",
                message=f"{why}: manual check required",
                ts=now,
            ),
        )
        self.ports.send(WATCHDOG, RequestMode(target=TradingMode.HALTED, reason=why))
        # Stop at once rather than wait for the watchdog's broadcast: only ever stricter.
        if self.mode.rank < TradingMode.HALTED.rank:
            self.mode_change(ModeChange(old=self.mode, new=TradingMode.HALTED, reason=why, ts=now))

    def hold_for_verifier(self, p: Pending, now: float) -> None:
        confirm.hold_for_verifier(self, p, now)

    def price_confirmed(self, c: PriceConfirmation) -> None:
        confirm.price_confirmed(self, c)

    def release(self, symbol: str, approve: bool, reason: str) -> None:
        confirm.release(self, symbol, approve, reason)

    # -- prices -> fills and exits ---------------------------------------------------

    def tick(self, t: Tick) -> None:
        self.price(t.symbol, t.price, t.ts, t.open_price)

    def price(self, symbol: str, price: float, ts: float, open_price: float | None = None) -> None:
        """One market print: fills it causes, the mismatch guard, stops and targets."""
        self.prices[symbol] = price
        fills = self.broker.on_price(symbol, price, ts, open_price=open_price)
        fills += self.broker.poll_fills()
        if fills:
            self.apply_fills(fills)
        broker_price = self.broker.last_price(symbol)
        if self.gate.mismatch(symbol, broker_price, price) is _HALT:
            assert broker_price is not None
            self.halt_for_mismatch(symbol, broker_price, price)
        held = self.positions.get(symbol)
        if held is not None and held.qty != 0:
            self.check_exits(held, price)

    def apply_fills(self, fills: list[BrokerFill]) -> None:
        if not fills:
            return
        for f in fills:
            live = self.book.find(f.client_order_id)
            if live is not None:
                moved = live.state.apply(Filled(f.fill_id, f.qty))
                if moved.ignored == "fill already counted":
                    self.log.warning("fill {} reported twice: counted once", f.fill_id)
                    continue
                live.filled = live.state.filled_qty
                live.notional += f.qty * f.price
            self.stats["fills"] += 1
            self.metrics.fills.inc()
            self.record(RecordFill(fill=fill_message(f)))
            if live is not None:
                self.record(
                    OrderUpdate(
                        client_order_id=f.client_order_id,
                        status=live.state.status,
                        ts=f.ts,
                        filled_qty=live.filled,
                        avg_fill_price=live.notional / live.filled if live.notional else None,
                    )
                )
            self.settle(f, live)
            if live is not None and live.state.complete:
                self.book.live.pop(f.client_order_id, None)
        self.publish_positions()

    def settle(self, f: BrokerFill, live: Live | None) -> None:
        """Book the fill on the position, the way the broker does, and report a close.
        Computed from the fill itself so a broker that is unreachable a moment later
        cannot lose it."""
        o = live.order if live is not None else None
        booked = book_fill(self.positions, f, o.posture if o else None)
        if booked.closed is not None:
            self.closed(booked.closed, f, live)
        if booked.held is None:
            return
        if o is not None and o.intent == "entry":
            set_stops(booked.held, o, self.settings)
        self.persist_position(booked.held)

    def closed(self, held: Held, f: BrokerFill, live: Live | None) -> None:
        pnl = held.realised
        pct = pnl_pct(held, f.price)
        self.realised += pnl
        reason = live.reason if live is not None and live.reason else "close"
        self.log.bind(event_id=live.order.event_id if live else None).info(
            f"position {f.symbol} closed ({reason}): pnl {pnl:.2f} ({pct:.2f}%)"
        )
        self.record(PositionUpdate(symbol=f.symbol, qty=0.0, avg_price=0.0, ts=f.ts))
        self.ports.send(
            POSTURE,
            PositionClosed(symbol=f.symbol, reason=reason, pnl=pnl, pnl_pct=pct, ts=f.ts),
        )

    def persist_position(self, h: Held) -> None:
        self.record(
            PositionUpdate(
                symbol=h.symbol,
                qty=h.qty,
                avg_price=h.avg_price,
                ts=self.now(),
                opened_at=h.opened_at,
                posture=h.posture,
                stop_loss=h.stop_loss,
                take_profit=h.take_profit,
            )
        )

    def check_exits(self, held: Held, price: float) -> None:
        pct = pnl_pct(held, price)
        if not held.warned and pct <= self.settings.risk.position_warning_pct:
            held.warned = True
            self.ports.send(
                WATCHDOG,
                Alert(
                    alert_id=f"pos-{held.symbol}-{int(held.opened_at)}",
                    level=AlertLevel.WARNING,
                    kind="position_loss",
                    message=f"{held.symbol} at {pct:.2f}%",
                    ts=self.now(),
                ),
            )
        if held.exiting:
            return
        reason = exit_reason(held, price)
        if reason:
            self.exit(held, reason)

    def exit(self, held: Held, reason: str) -> None:
        if not self.mode.allows_exits() or self.ports.run_stopping():
            return  # stopping: the next run's reconciliation and stops take it from here
        order = exit_order(held, reason, "", self.now())
        held.exiting = order.client_order_id
        self.log.info(
            "{} {} at {}: exit {} x{}",
            reason,
            held.symbol,
            self.prices.get(held.symbol),
            order.side,
            order.qty,
        )
        result = self.submit(order, reason)
        if not in_flight(result) and held.symbol in self.positions:
            held.exiting = ""

    # -- modes -----------------------------------------------------------------------

    def mode_change(self, m: ModeChange) -> None:
        mode_rules.mode_change(self, m)

    def liquidate(self) -> None:
        mode_rules.liquidate(self)

    def drop_awaiting(self, why: str, *, entries_only: bool = False) -> None:
        confirm.drop_awaiting(self, why, entries_only=entries_only)

    def cancel_open(self, why: str, *, entries_only: bool = False) -> list[str]:
        return mode_rules.cancel_open(self, why, entries_only=entries_only)

    # -- the sweep -------------------------------------------------------------------

    def sweep(self) -> None:
        sweep.sweep(self)

    def expire_entries(self, now: float) -> None:
        sweep.expire_entries(self, now)

    def resolve(self, now: float) -> None:
        sweep.resolve(self, now)

    def clear_exit(self, symbol: str, coid: str) -> None:
        sweep.clear_exit(self, symbol, coid)

    # -- shared state ----------------------------------------------------------------

    def open_count(self, entering: str = "", entries: int | None = None) -> int:
        """Positions plus entries that may become positions (working, unknown, held). For
        an entry on `entering`, a position there whose exit is working is not counted: a
        reversal replaces it. `entries`: the entries, when the caller just counted them."""
        held = 0
        for h in self.positions.values():  # per entry decision: a loop, no generator
            if h.qty != 0 and not (h.exiting and h.symbol == entering):
                held += 1
        return held + (self.book.entries_in_flight() if entries is None else entries)

    def publish_positions(self) -> None:
        self.metrics.open_positions.set(len(self.positions))
        self.publish_account()

    def publish_account(self) -> None:
        try:
            acct = self.broker.account()
        except BrokerError as exc:
            self.log.warning("account unavailable: {}", exc)
            return
        self.equity, self.cash = acct.equity, acct.cash
        self.risk.mark_equity(acct.equity, self.now())
        self.metrics.equity.set(acct.equity)
        self.ports.publish(
            {s: h.view() for s, h in self.positions.items()},
            {"equity": acct.equity, "cash": acct.cash, "realised": self.realised},
        )

    def status(self) -> dict[str, Any]:
        start = self.settings.broker.capital
        return {
            "broker": self.broker.name,
            "mode": self.mode.value,
            "equity": round(self.equity, 2),
            "cash": round(self.cash, 2),
            "pnl": round(self.equity - start, 2),
            "realised": round(self.realised, 2),
            "positions": {s: h.view() for s, h in self.positions.items()},
            "open_orders": [lv.order.client_order_id for lv in self.live.values()],
            "unknown_orders": list(self.unknown),
            "awaiting_verifier": {s: len(ps) for s, ps in self.awaiting.items()},
            **self.stats,
            "refused_by_check": dict(self.risk.refused),
            "execution": self.quality.summary(),
        }


def fill_message(f: BrokerFill) -> Fill:
    """The broker's fill as the ledger records it."""
    return Fill(
        fill_id=f.fill_id,
        client_order_id=f.client_order_id,
        symbol=f.symbol,
        side=Side(f.side.value),
        qty=f.qty,
        price=f.price,
        fee=f.fee,
        ts=f.ts,
    )
