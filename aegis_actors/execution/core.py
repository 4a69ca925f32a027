"""The execution core: decisions -> orders, prices -> fills, exits and mode rules.

No actor in here: side effects go through `Ports` (tell a named actor, write ahead,
read the posture in force, publish to the cache), so the property tests drive the very
code the actor runs. `submit` is the only way to the broker's `submit`, and it runs the
pre-trade risk checks and the data-mismatch gate first, for entries and exits alike.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aegis_actors.brokers import OPEN_STATUSES, Broker, BrokerError, BrokerFill, BrokerOrder
from aegis_actors.brokers import OrderStatus as BStatus
from aegis_actors.brokers import OrderType as BOrderType
from aegis_actors.brokers import Side as BSide
from aegis_actors.context import posture_params
from aegis_actors.execution.mismatch import MismatchGuard, Tier, diff_pct
from aegis_actors.execution.quality import ExecutionQuality
from aegis_actors.execution.risk import OrderMix, PreTradeRisk, client_order_id
from aegis_actors.hush import Hush
from aegis_actors.messages import (
    DECISION,
    DONE,
    ORDER_ACCEPTED,
    Action,
    Alert,
    AlertLevel,
    ConfirmPrice,
    Decision,
    EventDone,
    Fill,
    ModeChange,
    Msg,
    Order,
    OrderType,
    OrderUpdate,
    Outcome,
    PositionClosed,
    PositionUpdate,
    Posture,
    PriceConfirmation,
    RecordFill,
    RequestMode,
    Side,
    Snapshot,
    Tick,
    TradingMode,
)
from aegis_actors.metrics import Metrics
from aegis_actors.runtime import MARKET, POSTURE, STORE, VERIFIER, WATCHDOG
from aegis_actors.settings import Settings

_EPS = 1e-9
_FINAL = frozenset({BStatus.CANCELLED, BStatus.REJECTED})


class Ports(Protocol):
    """What the core needs from its actor."""

    def send(self, name: str, message: Msg) -> bool: ...

    def write_ahead(self, order: Order) -> str:
        """'new' once the order is durable, 'duplicate' if it already was, else an error."""
        ...

    def current_posture(self) -> Posture | None: ...

    def publish(self, positions: dict[str, Any], account: dict[str, Any]) -> None: ...


@dataclass
class Held:
    """A position as execution manages it (the broker's qty, our stops and targets)."""

    symbol: str
    qty: float
    avg_price: float
    opened_at: float
    posture: Posture | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    warned: bool = False
    exiting: str = ""  # client order id of the exit in flight (or awaiting the verifier)
    exit_attempts: int = 0
    realised: float = 0.0  # PnL realised by partial exits so far (before fees)

    def view(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "qty": self.qty,
            "avg_price": self.avg_price,
            "stop_loss": self.stop_loss,
            "take_profit": self.take_profit,
            "posture": self.posture.value if self.posture else None,
            "opened_at": self.opened_at,
        }


@dataclass
class Live:
    order: Order
    filled: float = 0.0
    notional: float = 0.0
    reason: str = ""  # exit reason for exits
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pending:
    """An order held until the verifier confirms its symbol's price (SPEC 4.3)."""

    order: Order
    decision: Decision | None
    reason: str


def stops_for(posture: Posture | None, settings: Settings, side: Side, avg: float) -> tuple:
    """Stop and target prices from the posture's numbers (SPEC 3) around the entry price."""
    if posture is None:
        return None, None
    p = posture_params(settings, posture)
    if side is Side.BUY:
        return avg * (1 + p.stop_loss), avg * (1 + p.take_profit)
    return avg * (1 - p.stop_loss), avg * (1 - p.take_profit)


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
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.now = now
        self.ports = ports
        self.metrics = metrics
        self.log = log
        self.mode = mode
        self.positions: dict[str, Held] = {}
        self.live: dict[str, Live] = {}
        self.unknown: dict[str, Live] = {}  # sent, broker answer lost: resolved by the sweep
        self.awaiting: dict[str, list[Pending]] = {}  # symbol -> orders held for the verifier
        self.confirm_asked: dict[str, tuple[str, float]] = {}  # symbol -> (request id, at)
        risk = settings.risk
        self.mix: dict[Posture, OrderMix] = {p: OrderMix(risk.order_mix_window) for p in Posture}
        self.guard = MismatchGuard(
            risk.mismatch_ignore_pct, risk.mismatch_halt_pct, risk.mismatch_confirm_ttl_s
        )
        self.stats = {"orders": 0, "fills": 0, "refused": 0, "rejected": 0, "errors": 0}
        self.quality = ExecutionQuality()
        self.realised = 0.0
        self.prices: dict[str, float] = {}
        acct = broker.account()
        self.equity, self.cash = acct.equity, acct.cash
        self.risk = PreTradeRisk(risk, self.equity, now())
        self.hush = Hush(burst=5)

    # -- decisions -> orders ---------------------------------------------------------

    def decide(self, d: Decision) -> None:
        now = self.now()
        price = self.prices.get(d.symbol) or d.reference_price
        held = self.positions.get(d.symbol)
        if d.action is Action.CLOSE:
            if held is None or held.qty == 0 or held.exiting:
                return self.done(d, Outcome.REFUSED, "nothing to close")
            order = self.exit_order(held, d.decision_id, d.event_id, now)
            held.exiting = order.client_order_id
            outcome = self.submit(order, "close", d)
            if outcome not in ("accepted", "duplicate", "awaiting"):
                held.exiting = ""
            return self.finish(d, order, outcome)
        if d.action not in (Action.BUY, Action.SELL):
            return self.done(d, Outcome.HOLD, "hold")
        if held is not None and held.qty != 0:
            return self.done(d, Outcome.REFUSED, "already holding; one position per symbol")
        if self.working_entry(d.symbol):
            return self.done(d, Outcome.REFUSED, "an entry order is already working on it")
        posture = self.ports.current_posture() or d.posture
        if posture is not d.posture:
            self.log.bind(event_id=d.event_id).info(
                "decision made under {}, posture now {}: sized by {}", d.posture, posture, posture
            )
        params = posture_params(self.settings, posture)
        cheap = self.risk.precheck(mode=self.mode, params=params, open_positions=self.open_count())
        if cheap is not None:  # cheap checks first: no account call, no order built
            return self.refuse(d, cheap.check, cheap.why)
        try:
            self.equity = self.broker.account().equity
        except BrokerError as exc:
            self.metrics.errors.labels("broker").inc()
            self.log.bind(event_id=d.event_id).error("no entry: account unavailable: {}", exc)
            return self.done(d, Outcome.FAILED, f"broker unavailable: {exc}")
        self.risk.mark_equity(self.equity, now)
        otype = self.mix[posture].choose(params.limit_ratio)
        limit = round(d.limit_price or price, 4) if otype is OrderType.LIMIT else None
        worst = max(price, limit or price)
        qty = math.floor(params.entry_size * d.size_fraction * self.equity / worst)
        if qty < 1:
            return self.refuse(d, "size", f"entry size buys less than one share at {worst}")
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
        self.finish(d, order, self.submit(order, "", d))

    def finish(self, d: Decision, order: Order, outcome: str) -> None:
        log = self.log.bind(event_id=d.event_id)
        log.info(
            "{} {} {} x{} ({}): {}",
            order.intent,
            order.side,
            order.symbol,
            order.qty,
            order.order_type,
            outcome,
        )
        if outcome == "awaiting":
            return  # finished when the verifier answers
        if outcome == "accepted":
            self.done(d.stamp(ORDER_ACCEPTED, self.now()), Outcome.ORDERED, order.client_order_id)
        elif outcome == "duplicate":
            self.done(d, Outcome.REFUSED, "duplicate decision: order already exists")
        elif outcome.startswith("error"):
            self.done(d, Outcome.FAILED, outcome)
        else:
            self.done(d, Outcome.REFUSED, outcome)

    def working_entry(self, symbol: str) -> bool:
        return any(
            lv.order.symbol == symbol and lv.order.intent == "entry"
            for lv in (*self.live.values(), *self.unknown.values())
        ) or any(p.order.intent == "entry" for p in self.awaiting.get(symbol, []))

    def exit_order(self, held: Held, key: str, event_id: str, now: float) -> Order:
        held.exit_attempts += 1
        seed = f"{key}|{held.symbol}|{held.opened_at}|{held.exit_attempts}"
        return Order(
            client_order_id=client_order_id(seed, "exit"),
            decision_id=key,
            event_id=event_id,
            symbol=held.symbol,
            side=Side.SELL if held.qty > 0 else Side.BUY,
            qty=abs(held.qty),
            order_type=OrderType.MARKET,
            intent="exit",
            posture=held.posture,
            created_at=now,
        )

    def submit(self, order: Order, reason: str, decision: Decision | None = None) -> str:
        """The one road to the broker: risk, then the mismatch gate, then `place`.

        Returns accepted | duplicate | awaiting | refused:<check>: <why> | error:<why>.
        """
        now = self.now()
        # Limits are those of the posture in force now (an order held for the verifier may
        # have been sized under another one); exits keep their entry's posture for stops.
        posture = self.ports.current_posture() or order.posture or Posture.DEFENSIVE
        price = self.prices.get(order.symbol) or order.limit_price
        if price is None and decision is not None:
            price = decision.reference_price
        if price is not None and order.limit_price is not None:
            price = max(price, order.limit_price)  # size is held at the worst price it may pay
        # Capital now, not when the order was sized: one held for the verifier may be
        # released after the market moved (found by the property test).
        try:
            self.equity = self.broker.account().equity
            self.risk.mark_equity(self.equity, now)
        except BrokerError as exc:
            if order.intent == "entry":
                return self.refused(order, "account", f"account unavailable: {exc}")
        refusal = self.risk.check(
            order,
            mode=self.mode,
            params=posture_params(self.settings, posture),
            price=price or 0.0,
            equity=self.equity,
            open_positions=self.open_count(),
            now=now,
        )
        if refusal is not None:
            return self.refused(order, refusal.check, refusal.why)
        gate = self.gate(order.symbol, now, liquidation=reason == "liquidation")
        if gate is Tier.HALT:
            return self.refused(order, "mismatch", "broker and feed prices over the halt line")
        if gate is Tier.CONFIRM:
            self.hold_for_verifier(Pending(order, decision, reason), now)
            return "awaiting"
        if order.intent == "entry" and order.posture is not None:
            self.mix[order.posture].record(order.order_type)
        return self.place(order, reason, decision)

    def refused(self, order: Order, check: str, why: str) -> str:
        self.stats["refused"] += 1
        self.metrics.refused.labels(check).inc()
        hushed = self.hush.allow(check, self.now())
        if hushed is not None:  # a few lines a minute per check; all are counted
            self.log.bind(event_id=order.event_id or None).warning(
                "{} {} {} refused by {} check: {}{}",
                order.intent,
                order.side,
                order.symbol,
                check,
                why,
                f" ({hushed} more refused by it not logged)" if hushed else "",
            )
        return f"refused:{check}: {why}"

    def place(self, order: Order, reason: str = "", decision: Decision | None = None) -> str:
        """Write ahead, then send. Returns accepted | duplicate | refused:<why> | error:<why>."""
        try:
            written = self.ports.write_ahead(order)
        except Exception as exc:
            written = f"store unreachable: {exc}"
        if written == "duplicate":
            return "duplicate"
        if written != "new":
            self.stats["errors"] += 1
            self.metrics.orders.labels("not_written").inc()
            self.log.bind(event_id=order.event_id or None).error(
                "order {} NOT sent: write-ahead failed ({})", order.client_order_id, written
            )
            self.ports.send(
                WATCHDOG,
                RequestMode(
                    target=TradingMode.LIMITED, reason="durable store unavailable for orders"
                ),
            )
            return f"error:write-ahead failed ({written})"
        now = self.now()
        started = decision.stamps.get(DECISION, order.created_at) if decision else order.created_at
        self.risk.record_sent(now)
        self.stats["orders"] += 1
        try:
            ack = self.broker.submit(
                BrokerOrder(
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    side=BSide(order.side.value),
                    qty=order.qty,
                    order_type=BOrderType(order.order_type.value),
                    limit_price=order.limit_price,
                )
            )
        except BrokerError as exc:
            # The broker may or may not hold it: the ledger says so, and the sweep asks.
            self.stats["errors"] += 1
            self.quality.error()
            self.metrics.orders.labels("unknown").inc()
            self.unknown[order.client_order_id] = Live(order, reason=reason)
            self.record(
                OrderUpdate(
                    client_order_id=order.client_order_id,
                    status="unknown",
                    ts=self.now(),
                    error=str(exc),
                )
            )
            self.log.bind(event_id=order.event_id or None).error(
                "order {} state unknown after broker error: {}", order.client_order_id, exc
            )
            return f"error:{exc}"
        status = ack.status.value if ack.accepted else "rejected"
        self.metrics.orders.labels(status).inc()
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
            return f"refused:broker rejected ({ack.reason})"
        self.quality.accept((acked - started) * 1000.0)
        self.live[order.client_order_id] = Live(order, reason=reason)
        self.apply_fills(self.broker.poll_fills())
        return "accepted"

    def refuse(self, d: Decision, check: str, why: str) -> None:
        self.stats["refused"] += 1
        self.metrics.refused.labels(check).inc()
        hushed = self.hush.allow(check, self.now())
        if hushed is not None:  # a few lines a minute per check; all are counted
            self.log.bind(event_id=d.event_id).warning(
                "order refused by {} check: {}{}",
                check,
                why,
                f" ({hushed} more refused by it not logged)" if hushed else "",
            )
        self.done(d, Outcome.REFUSED, f"{check}: {why}")

    def done(self, d: Decision, outcome: Outcome, detail: str) -> None:
        done = EventDone(
            event_id=d.event_id,
            stamps={**d.stamps, DONE: self.now()},
            symbol=d.symbol,
            outcome=outcome,
            detail=detail,
        )
        self.ports.send(MARKET, done)  # the gateway frees the symbol and tells the watchdog

    def record(self, msg: Msg) -> None:
        self.ports.send(STORE, msg)

    # -- data mismatch (SPEC 4.3) ----------------------------------------------------

    def gate(self, symbol: str, now: float, *, liquidation: bool = False) -> Tier:
        broker_price = self.broker.last_price(symbol)
        feed_price = self.prices.get(symbol)
        t = self.guard.assess(symbol, broker_price, feed_price)
        if t is Tier.HALT:
            assert broker_price is not None and feed_price is not None
            self.halt_for_mismatch(symbol, broker_price, feed_price)
        elif t is Tier.CONFIRM and (liquidation or self.guard.is_confirmed(symbol, now)):
            return Tier.IGNORE  # confirmed; a liquidation never waits (its price is the market)
        return t

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
        symbol = p.order.symbol
        self.awaiting.setdefault(symbol, []).append(p)
        if symbol in self.confirm_asked:
            return
        broker_price = self.broker.last_price(symbol) or 0.0
        feed_price = self.prices.get(symbol) or 0.0
        request_id = "cp-" + uuid.uuid4().hex[:12]
        self.confirm_asked[symbol] = (request_id, now)
        pct = diff_pct(broker_price, feed_price) if feed_price else 0.0
        self.log.warning(
            "{}: broker {} vs feed {} ({:.2f}%): orders held for the verifier",
            symbol,
            broker_price,
            feed_price,
            pct,
        )
        self.ports.send(
            VERIFIER,
            ConfirmPrice(
                request_id=request_id,
                symbol=symbol,
                broker_price=broker_price,
                feed_price=feed_price,
                diff_pct=pct,
                ts=now,
            ),
        )

    def price_confirmed(self, c: PriceConfirmation) -> None:
        asked = self.confirm_asked.get(c.symbol)
        if asked is None or asked[0] != c.request_id:
            self.log.info("late price confirmation for {} ignored", c.symbol)
            return
        self.release(c.symbol, c.approve, c.reason)

    def release(self, symbol: str, approve: bool, reason: str) -> None:
        now = self.now()
        self.confirm_asked.pop(symbol, None)
        held = self.awaiting.pop(symbol, [])
        if approve:
            self.guard.confirm(symbol, now)
            self.log.info("verifier confirmed {}: {}", symbol, reason)
        for p in held:
            if approve:
                outcome = self.submit(p.order, p.reason, p.decision)
            else:
                outcome = self.refused(p.order, "mismatch", f"verifier did not confirm: {reason}")
            if p.order.intent == "exit":
                h = self.positions.get(symbol)
                if h is not None and outcome not in ("accepted", "duplicate", "awaiting"):
                    h.exiting = ""
            if p.decision is not None:
                self.finish(p.decision, p.order, outcome)

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
        if self.guard.assess(symbol, self.broker.last_price(symbol), price) is Tier.HALT:
            bp = self.broker.last_price(symbol)
            assert bp is not None
            self.halt_for_mismatch(symbol, bp, price)
        held = self.positions.get(symbol)
        if held is not None and held.qty != 0:
            self.check_exits(held, price)

    def apply_fills(self, fills: list[BrokerFill]) -> None:
        if not fills:
            return
        for f in fills:
            self.stats["fills"] += 1
            self.metrics.fills.inc()
            self.record(RecordFill(fill=fill_message(f)))
            live = self.live.get(f.client_order_id) or self.unknown.pop(f.client_order_id, None)
            if live is not None:
                self.live[f.client_order_id] = live
                live.filled += f.qty
                live.notional += f.qty * f.price
                complete = live.filled >= live.order.qty - _EPS
                self.record(
                    OrderUpdate(
                        client_order_id=f.client_order_id,
                        status="filled" if complete else "partially_filled",
                        ts=f.ts,
                        filled_qty=live.filled,
                        avg_fill_price=live.notional / live.filled,
                    )
                )
            self.settle(f, live)
            if live is not None and live.filled >= live.order.qty - _EPS:
                self.live.pop(f.client_order_id, None)
        self.publish_positions()

    def settle(self, f: BrokerFill, live: Live | None) -> None:
        """Book the fill on the position (average in on adds, realise on reductions, start
        again on a flip), the way the broker does, and report a close. Computed from the
        fill itself so a broker that is unreachable a moment later cannot lose it."""
        signed = f.qty if f.side == BSide.BUY else -f.qty
        old = self.positions.get(f.symbol)
        o = live.order if live is not None else None
        if old is None or abs(old.qty) <= _EPS:
            old = self.positions[f.symbol] = Held(
                symbol=f.symbol,
                qty=signed,
                avg_price=f.price,
                opened_at=f.ts,
                posture=o.posture if o else None,
            )
        elif (old.qty > 0) == (signed > 0):
            new_qty = old.qty + signed
            old.avg_price = (abs(old.qty) * old.avg_price + f.qty * f.price) / abs(new_qty)
            old.qty = new_qty
        else:
            closed = min(f.qty, abs(old.qty))
            old.realised += closed * (f.price - old.avg_price) * (1 if old.qty > 0 else -1)
            new_qty = old.qty + signed
            if abs(new_qty) <= _EPS:
                return self.closed(old, f, live)
            if (new_qty > 0) != (old.qty > 0):  # flipped through zero: a new position
                self.closed(old, f, live)
                old = self.positions[f.symbol] = Held(
                    f.symbol, new_qty, f.price, f.ts, posture=o.posture if o else None
                )
            else:
                old.qty = new_qty
        if o is not None and o.intent == "entry":
            self.set_stops(old, o)
        self.persist_position(old)

    def closed(self, held: Held, f: BrokerFill, live: Live | None) -> None:
        pnl = held.realised
        pnl_pct = (f.price / held.avg_price - 1.0) * (1 if held.qty > 0 else -1) * 100
        self.realised += pnl
        reason = live.reason if live is not None and live.reason else "close"
        self.log.bind(event_id=live.order.event_id if live else None).info(
            "position {} closed ({}): pnl {:.2f} ({:.2f}%)", f.symbol, reason, pnl, pnl_pct
        )
        self.positions.pop(f.symbol, None)
        self.record(PositionUpdate(symbol=f.symbol, qty=0.0, avg_price=0.0, ts=f.ts))
        self.ports.send(
            POSTURE,
            PositionClosed(symbol=f.symbol, reason=reason, pnl=pnl, pnl_pct=pnl_pct, ts=f.ts),
        )

    def set_stops(self, held: Held, entry: Order) -> None:
        """Stops from the posture in force at entry; a decision's own stop or target is
        kept only where it is tighter than the posture's."""
        side = Side.BUY if held.qty > 0 else Side.SELL
        sl, tp = stops_for(entry.posture, self.settings, side, held.avg_price)
        if sl is not None and entry.stop_loss is not None:
            sl = max(sl, entry.stop_loss) if side is Side.BUY else min(sl, entry.stop_loss)
        if tp is not None and entry.take_profit is not None:
            tp = min(tp, entry.take_profit) if side is Side.BUY else max(tp, entry.take_profit)
        held.stop_loss = sl if sl is not None else entry.stop_loss
        held.take_profit = tp if tp is not None else entry.take_profit

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
        long = held.qty > 0
        pnl_pct = (price / held.avg_price - 1.0) * (1 if long else -1) * 100.0
        if not held.warned and pnl_pct <= self.settings.risk.position_warning_pct:
            held.warned = True
            self.ports.send(
                WATCHDOG,
                Alert(
                    alert_id=f"pos-{held.symbol}-{int(held.opened_at)}",
                    level=AlertLevel.WARNING,
                    kind="position_loss",
                    message=f"{held.symbol} at {pnl_pct:.2f}%",
                    ts=self.now(),
                ),
            )
        if held.exiting:
            return
        reason = ""
        if held.stop_loss is not None and (
            price <= held.stop_loss if long else price >= held.stop_loss
        ):
            reason = "stop_loss"
        elif held.take_profit is not None and (
            price >= held.take_profit if long else price <= held.take_profit
        ):
            reason = "take_profit"
        if reason:
            self.exit(held, reason)

    def exit(self, held: Held, reason: str) -> None:
        if not self.mode.allows_exits():
            return
        order = self.exit_order(held, reason, "", self.now())
        held.exiting = order.client_order_id
        self.log.info(
            "{} {} at {}: exit {} x{}",
            reason,
            held.symbol,
            self.prices.get(held.symbol),
            order.side,
            order.qty,
        )
        outcome = self.submit(order, reason)
        if outcome not in ("accepted", "duplicate", "awaiting") and held.symbol in self.positions:
            held.exiting = ""

    # -- modes -----------------------------------------------------------------------

    def mode_change(self, m: ModeChange) -> None:
        if m.new is TradingMode.SHUTDOWN and self.mode.rank < TradingMode.SAFE.rank:
            # shutdown comes after safe: close everything while exits are still allowed
            self.mode_change(m.model_copy(update={"new": TradingMode.SAFE}))
        self.mode = m.new  # a repeated broadcast (we may have moved first) is harmless
        if m.new is TradingMode.LIMITED:
            self.cancel_open(f"mode {m.new}", entries_only=True)
            self.drop_awaiting(f"mode {m.new}", entries_only=True)
        if m.new in (TradingMode.SAFE, TradingMode.HALTED, TradingMode.SHUTDOWN):
            self.cancel_open(f"mode {m.new}")
            self.drop_awaiting(f"mode {m.new}")
        if m.new is TradingMode.SAFE:
            self.liquidate()
        if m.new in (TradingMode.SAFE, TradingMode.SHUTDOWN):
            self.record(Snapshot(kind=f"mode_{m.new}", data=self.status(), ts=self.now()))

    def liquidate(self) -> None:
        """Close every position the broker holds (tracked or not), one exit each."""
        try:
            for p in self.broker.positions():
                if p.symbol not in self.positions and abs(p.qty) > _EPS:
                    self.positions[p.symbol] = Held(p.symbol, p.qty, p.avg_price, self.now())
        except BrokerError as exc:
            self.log.error("liquidation: broker positions unavailable: {}", exc)
        for held in list(self.positions.values()):
            if held.qty != 0 and not held.exiting:
                self.exit(held, "liquidation")

    def drop_awaiting(self, why: str, *, entries_only: bool = False) -> None:
        for symbol in list(self.awaiting):
            keep = [p for p in self.awaiting[symbol] if entries_only and p.order.intent == "exit"]
            for p in self.awaiting[symbol]:
                if p in keep:
                    continue
                if p.order.intent == "exit" and symbol in self.positions:
                    self.positions[symbol].exiting = ""
                if p.decision is not None:
                    self.finish(p.decision, p.order, f"refused:mode: {why}")
            if keep:
                self.awaiting[symbol] = keep
            else:
                self.awaiting.pop(symbol)
                self.confirm_asked.pop(symbol, None)

    def cancel_open(self, why: str, *, entries_only: bool = False) -> None:
        try:
            if entries_only:
                cancelled = [
                    coid
                    for coid, lv in list(self.live.items())
                    if lv.order.intent == "entry" and self.broker.cancel(coid)
                ]
            else:
                cancelled = self.broker.cancel_all()
        except BrokerError as exc:
            self.log.error("cancel failed ({}): {}", why, exc)
            return
        now = self.now()
        for coid in cancelled:
            self.live.pop(coid, None)
            for h in self.positions.values():
                if h.exiting == coid:
                    h.exiting = ""
            self.record(OrderUpdate(client_order_id=coid, status="cancelled", ts=now, error=why))
        if cancelled:
            self.log.warning("cancelled {} open orders: {}", len(cancelled), why)

    # -- the sweep -------------------------------------------------------------------

    def sweep(self) -> None:
        now = self.now()
        try:
            self.expire_entries(now)
        except BrokerError as exc:
            self.log.warning("stale entries not cancelled yet: {}", exc)
        self.resolve(now)
        timeout = self.settings.roles.verifier.timeout_s
        for symbol, (_rid, at) in list(self.confirm_asked.items()):
            if now - at >= timeout:
                self.release(symbol, False, f"no answer within {timeout}s")
        if self.mode is TradingMode.SAFE:
            self.liquidate()  # retry what a rate limit or a broker error left open
        self.publish_account()

    def expire_entries(self, now: float) -> None:
        for coid, live in list(self.live.items()):
            if (
                live.order.intent == "entry"
                and now - live.order.created_at >= self.settings.risk.entry_ttl_s
                and self.broker.cancel(coid)
            ):
                self.live.pop(coid, None)
                self.record(
                    OrderUpdate(
                        client_order_id=coid,
                        status="cancelled",
                        ts=now,
                        error="entry not filled in time",
                    )
                )

    def resolve(self, now: float) -> None:
        """Ask the broker about orders whose answer was lost, and orders that ended at the
        broker without us seeing it (expired, cancelled there), so the ledger stays true."""
        try:
            for coid, live in list(self.unknown.items()):
                o = self.broker.order(coid)
                if o is None:
                    self.unknown.pop(coid)
                    self.record(
                        OrderUpdate(
                            client_order_id=coid, status="failed", ts=now, error="not at broker"
                        )
                    )
                    self.clear_exit(live.order.symbol, coid)
                    continue
                self.unknown.pop(coid)
                self.record(
                    OrderUpdate(
                        client_order_id=coid,
                        status=o.status.value,
                        ts=now,
                        broker_order_id=o.broker_order_id,
                    )
                )
                if o.status in OPEN_STATUSES or o.filled_qty > live.filled:
                    self.live[coid] = live
                else:
                    self.clear_exit(live.order.symbol, coid)
            self.apply_fills(self.broker.poll_fills())
            for coid, live in list(self.live.items()):
                o = self.broker.order(coid)
                if o is not None and o.status in _FINAL:
                    self.live.pop(coid)
                    self.record(OrderUpdate(client_order_id=coid, status=o.status.value, ts=now))
                    self.clear_exit(live.order.symbol, coid)
        except BrokerError as exc:
            self.log.warning("order resolution deferred: {}", exc)

    def clear_exit(self, symbol: str, coid: str) -> None:
        h = self.positions.get(symbol)
        if h is not None and h.exiting == coid:
            h.exiting = ""

    # -- shared state ----------------------------------------------------------------

    def open_count(self) -> int:
        """Positions plus entries that may become positions (working, unknown, held)."""
        entries = sum(
            1 for lv in (*self.live.values(), *self.unknown.values()) if lv.order.intent == "entry"
        )
        held = sum(1 for ps in self.awaiting.values() for p in ps if p.order.intent == "entry")
        return sum(1 for h in self.positions.values() if h.qty != 0) + entries + held

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
            "broker": getattr(self.broker, "name", "?"),
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
