"""The execution actor: turns decisions into orders, and prices into fills and exits.

Every order passes pre-trade risk, is written to the durable store before the broker is
called (write-ahead, deterministic client order id), and every fill is recorded. Stops
and targets are checked on every tick against the posture in force at entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.brokers import Broker, BrokerError, BrokerFill, BrokerOrder
from aegis_actors.brokers import OrderType as BOrderType
from aegis_actors.brokers import Side as BSide
from aegis_actors.context import K_ACCOUNT, K_MODE, K_POSITIONS, posture_params
from aegis_actors.execution.reconcile import reconcile_on_start
from aegis_actors.execution.risk import OrderMix, PreTradeRisk, client_order_id
from aegis_actors.messages import (
    DONE,
    ORDER_ACCEPTED,
    Action,
    Alert,
    AlertLevel,
    Decision,
    EventDone,
    Fill,
    ModeChange,
    Order,
    OrderType,
    OrderUpdate,
    Outcome,
    PositionClosed,
    PositionUpdate,
    Posture,
    RecordFill,
    RequestMode,
    Side,
    Snapshot,
    Tick,
    Ticks,
    TradingMode,
    WriteOrder,
)
from aegis_actors.runtime import MARKET, POSTURE, STORE, WATCHDOG

WRITE_AHEAD_TIMEOUT_S = 2.0
SWEEP_EVERY_S = 5.0
ENTRY_TTL_S = 60.0  # an unfilled entry order is cancelled after this long


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
    exiting: str = ""  # client order id of the exit in flight

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


@dataclass(frozen=True)
class _Sweep:
    pass


class Execution(AegisActor):
    def __init__(self, ctx: Any, rt: Any, broker: Broker) -> None:
        super().__init__(ctx, rt)
        self.broker = broker

    def on_start(self) -> None:
        now = self.clock.now()
        self.mode = TradingMode(self.rt.cache.get_json(K_MODE) or "normal")
        self.positions: dict[str, Held] = {}
        self.live: dict[str, Live] = {}
        self.mix: dict[Posture, OrderMix] = {p: OrderMix() for p in Posture}
        self.stats = {"orders": 0, "fills": 0, "refused": 0, "rejected": 0, "errors": 0}
        self.realised = 0.0
        self.prices: dict[str, float] = {}
        self.reconciled = reconcile_on_start(self)  # execution/reconcile.py
        equity = self.broker.account().equity
        self.risk = PreTradeRisk(self.settings.risk, equity, now)
        self.publish_account()
        self.after(SWEEP_EVERY_S, _Sweep())

    # -- decisions -> orders ---------------------------------------------------------

    def on_Decision(self, d: Decision) -> None:
        now = self.clock.now()
        log = self.log.bind(event_id=d.event_id)
        price = self.prices.get(d.symbol) or d.reference_price
        held = self.positions.get(d.symbol)
        if d.action is Action.CLOSE:
            if held is None or held.qty == 0 or held.exiting:
                return self.done(d, Outcome.REFUSED, "nothing to close")
            order = self.exit_order(held, d.decision_id, d.event_id, now)
            reason = "close"
        elif d.action in (Action.BUY, Action.SELL):
            if held is not None and held.qty != 0:
                return self.done(d, Outcome.REFUSED, "already holding; one position per symbol")
            params = posture_params(self.settings, d.posture)
            equity = self.broker.account().equity
            qty = math.floor(params.entry_size * d.size_fraction * equity / price)
            if qty < 1:
                return self.refuse(d, "size", f"entry size buys less than one share at {price}")
            mix = self.mix[d.posture]
            otype = mix.choose(params.limit_ratio)
            order = Order(
                client_order_id=client_order_id(d.decision_id, "entry"),
                decision_id=d.decision_id,
                event_id=d.event_id,
                symbol=d.symbol,
                side=Side.BUY if d.action is Action.BUY else Side.SELL,
                qty=float(qty),
                order_type=otype,
                limit_price=(d.limit_price or price) if otype is OrderType.LIMIT else None,
                stop_loss=d.stop_loss,
                take_profit=d.take_profit,
                intent="entry",
                posture=d.posture,
                created_at=now,
            )
            reason = ""
        else:
            return self.done(d, Outcome.HOLD, "hold")
        params = posture_params(self.settings, d.posture)
        refusal = self.risk.check(
            order,
            mode=self.mode,
            params=params,
            price=price,
            equity=self.broker.account().equity,
            open_positions=self.open_count(),
            now=now,
        )
        if refusal is not None:
            return self.refuse(d, refusal.check, refusal.why)
        if order.intent == "entry":
            self.mix[d.posture].record(order.order_type)
        outcome = self.place(order, reason)
        log.info(
            "{} {} {} x{} ({}): {}",
            order.intent,
            order.side,
            order.symbol,
            order.qty,
            order.order_type,
            outcome,
        )
        if outcome == "accepted":
            self.done(
                d.stamp(ORDER_ACCEPTED, self.clock.now()), Outcome.ORDERED, order.client_order_id
            )
        elif outcome == "duplicate":
            self.done(d, Outcome.REFUSED, "duplicate decision: order already exists")
        else:
            self.done(
                d, Outcome.FAILED if outcome.startswith("error") else Outcome.REFUSED, outcome
            )

    def exit_order(self, held: Held, key: str, event_id: str, now: float) -> Order:
        return Order(
            client_order_id=client_order_id(f"{key}|{held.symbol}|{held.opened_at}", "exit"),
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

    def place(self, order: Order, reason: str = "") -> str:
        """Write ahead, then send. Returns accepted | duplicate | refused:<why> | error:<why>."""
        try:
            written = self.ask(STORE, WriteOrder(order=order), timeout=WRITE_AHEAD_TIMEOUT_S)
        except Exception as exc:
            written = f"store unreachable: {exc}"
        if written == "duplicate":
            return "duplicate"
        if written != "new":
            self.stats["errors"] += 1
            self.metrics.orders.labels("not_written").inc()
            self.log.bind(event_id=order.event_id).error(
                "order {} NOT sent: write-ahead failed ({})", order.client_order_id, written
            )
            self.send(
                WATCHDOG,
                RequestMode(
                    target=TradingMode.LIMITED, reason="durable store unavailable for orders"
                ),
            )
            return f"error:write-ahead failed ({written})"
        now = self.clock.now()
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
            self.metrics.orders.labels("error").inc()
            self.send(
                STORE,
                OrderUpdate(
                    client_order_id=order.client_order_id, status="error", ts=now, error=str(exc)
                ),
            )
            return f"error:{exc}"
        status = ack.status.value if ack.accepted else "rejected"
        self.metrics.orders.labels(status).inc()
        self.send(
            STORE,
            OrderUpdate(
                client_order_id=order.client_order_id,
                status=status,
                ts=self.clock.now(),
                broker_order_id=ack.broker_order_id,
                error=ack.reason or None,
            ),
        )
        if not ack.accepted:
            self.stats["rejected"] += 1
            return f"refused:broker rejected ({ack.reason})"
        self.live[order.client_order_id] = Live(order, reason=reason)
        self.apply_fills(self.broker.poll_fills())
        return "accepted"

    def refuse(self, d: Decision, check: str, why: str) -> None:
        self.stats["refused"] += 1
        self.metrics.refused.labels(check).inc()
        self.log.bind(event_id=d.event_id).warning("order refused by {} check: {}", check, why)
        self.done(d, Outcome.REFUSED, f"{check}: {why}")

    def done(self, d: Decision, outcome: Outcome, detail: str) -> None:
        done = EventDone(
            event_id=d.event_id,
            stamps={**d.stamps, DONE: self.clock.now()},
            symbol=d.symbol,
            outcome=outcome,
            detail=detail,
        )
        self.send(MARKET, done)
        self.send(WATCHDOG, done)

    # -- prices -> fills and exits ---------------------------------------------------

    def on_Tick(self, t: Tick) -> None:
        self.on_price(t.symbol, t.price, t.ts, t.open_price)

    def on_Ticks(self, batch: Ticks) -> None:
        """A feed batch: every print in order, as if each came alone."""
        for symbol, price, _volume, ts, open_price in batch.ticks:
            self.on_price(symbol, price, ts, open_price)

    def on_price(self, symbol: str, price: float, ts: float, open_price: float | None) -> None:
        self.prices[symbol] = price
        fills = self.broker.on_price(symbol, price, ts, open_price=open_price)
        fills += self.broker.poll_fills()
        if fills:
            self.apply_fills(fills)
        held = self.positions.get(symbol)
        if held is not None and held.qty != 0:
            self.check_exits(held, price)

    def apply_fills(self, fills: list[BrokerFill]) -> None:
        if not fills:
            return
        touched: set[str] = set()
        for f in fills:
            self.stats["fills"] += 1
            self.metrics.fills.inc()
            self.send(
                STORE,
                RecordFill(
                    fill=Fill(
                        fill_id=f.fill_id,
                        client_order_id=f.client_order_id,
                        symbol=f.symbol,
                        side=Side(f.side.value),
                        qty=f.qty,
                        price=f.price,
                        fee=f.fee,
                        ts=f.ts,
                    )
                ),
            )
            live = self.live.get(f.client_order_id)
            if live is not None:
                live.filled += f.qty
                live.notional += f.qty * f.price
                complete = live.filled >= live.order.qty - 1e-9
                self.send(
                    STORE,
                    OrderUpdate(
                        client_order_id=f.client_order_id,
                        status="filled" if complete else "partially_filled",
                        ts=f.ts,
                        filled_qty=live.filled,
                        avg_fill_price=live.notional / live.filled,
                    ),
                )
            self.settle(f, live)
            touched.add(f.symbol)
            if live is not None and live.filled >= live.order.qty - 1e-9:
                self.live.pop(f.client_order_id, None)
        self.publish_positions()
        self.publish_account()

    def settle(self, f: BrokerFill, live: Live | None) -> None:
        """Mirror the broker's position for the fill's symbol and report a close."""
        broker_pos = {p.symbol: p for p in self.broker.positions()}.get(f.symbol)
        old = self.positions.get(f.symbol)
        if broker_pos is None or broker_pos.qty == 0:
            if old is not None:
                pnl = (f.price - old.avg_price) * old.qty
                pnl_pct = (f.price / old.avg_price - 1.0) * (1 if old.qty > 0 else -1) * 100
                self.realised += pnl
                reason = live.reason if live is not None and live.reason else "close"
                self.log.bind(event_id=live.order.event_id if live else None).info(
                    "position {} closed ({}): pnl {:.2f} ({:.2f}%)", f.symbol, reason, pnl, pnl_pct
                )
                self.positions.pop(f.symbol, None)
                self.send(STORE, PositionUpdate(symbol=f.symbol, qty=0.0, avg_price=0.0, ts=f.ts))
                self.send(
                    POSTURE,
                    PositionClosed(
                        symbol=f.symbol, reason=reason, pnl=pnl, pnl_pct=pnl_pct, ts=f.ts
                    ),
                )
            return
        if old is None:
            o = live.order if live is not None else None
            old = self.positions[f.symbol] = Held(
                symbol=f.symbol,
                qty=broker_pos.qty,
                avg_price=broker_pos.avg_price,
                opened_at=f.ts,
                posture=o.posture if o else None,
                stop_loss=o.stop_loss if o else None,
                take_profit=o.take_profit if o else None,
            )
        old.qty, old.avg_price = broker_pos.qty, broker_pos.avg_price
        self.persist_position(old)

    def persist_position(self, h: Held) -> None:
        self.send(
            STORE,
            PositionUpdate(
                symbol=h.symbol,
                qty=h.qty,
                avg_price=h.avg_price,
                ts=self.clock.now(),
                opened_at=h.opened_at,
                posture=h.posture,
                stop_loss=h.stop_loss,
                take_profit=h.take_profit,
            ),
        )

    def check_exits(self, held: Held, price: float) -> None:
        if held.exiting:
            return
        long = held.qty > 0
        pnl_pct = (price / held.avg_price - 1.0) * (1 if long else -1) * 100.0
        if not held.warned and pnl_pct <= self.settings.risk.position_warning_pct:
            held.warned = True
            self.send(
                WATCHDOG,
                Alert(
                    alert_id=f"pos-{held.symbol}-{int(held.opened_at)}",
                    level=AlertLevel.WARNING,
                    kind="position_loss",
                    message=f"{held.symbol} at {pnl_pct:.2f}%",
                    ts=self.clock.now(),
                ),
            )
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
        order = self.exit_order(held, reason, "", self.clock.now())
        held.exiting = order.client_order_id
        self.log.info(
            "{} {} at {}: exit {} x{}",
            reason,
            held.symbol,
            self.prices.get(held.symbol),
            order.side,
            order.qty,
        )
        outcome = self.place(order, reason)
        if outcome not in ("accepted", "duplicate") and held.symbol in self.positions:
            held.exiting = ""

    # -- modes -----------------------------------------------------------------------

    def on_ModeChange(self, m: ModeChange) -> None:
        self.mode = m.new
        if m.new in (TradingMode.SAFE, TradingMode.HALTED, TradingMode.SHUTDOWN):
            self.cancel_open(f"mode {m.new}")
        if m.new in (TradingMode.SAFE, TradingMode.SHUTDOWN):
            for held in list(self.positions.values()):
                if held.qty != 0 and not held.exiting:
                    self.exit(held, "liquidation")
            self.send(
                STORE, Snapshot(kind=f"mode_{m.new}", data=self.status(), ts=self.clock.now())
            )

    def cancel_open(self, why: str) -> None:
        try:
            cancelled = self.broker.cancel_all()
        except BrokerError as exc:
            self.log.error("cancel all failed ({}): {}", why, exc)
            return
        now = self.clock.now()
        for coid in cancelled:
            self.live.pop(coid, None)
            for h in self.positions.values():
                if h.exiting == coid:
                    h.exiting = ""
            self.send(STORE, OrderUpdate(client_order_id=coid, status="cancelled", ts=now))
        if cancelled:
            self.log.warning("cancelled {} open orders: {}", len(cancelled), why)

    def on__Sweep(self, _msg: _Sweep) -> None:
        now = self.clock.now()
        for coid, live in list(self.live.items()):
            if live.order.intent == "entry" and now - live.order.created_at >= ENTRY_TTL_S:
                if self.broker.cancel(coid):
                    self.live.pop(coid, None)
                    self.send(
                        STORE,
                        OrderUpdate(
                            client_order_id=coid,
                            status="cancelled",
                            ts=now,
                            error="entry not filled in time",
                        ),
                    )
        self.publish_account()
        self.after(SWEEP_EVERY_S, _Sweep())

    # -- shared state ----------------------------------------------------------------

    def open_count(self) -> int:
        return sum(1 for h in self.positions.values() if h.qty != 0) + sum(
            1 for lv in self.live.values() if lv.order.intent == "entry"
        )

    def publish_positions(self) -> None:
        self.rt.cache.set_json(K_POSITIONS, {s: h.view() for s, h in self.positions.items()})
        self.metrics.open_positions.set(len(self.positions))

    def publish_account(self) -> None:
        acct = self.broker.account()
        self.risk_mark(acct.equity)
        self.metrics.equity.set(acct.equity)
        self.rt.cache.set_json(
            K_ACCOUNT, {"equity": acct.equity, "cash": acct.cash, "realised": self.realised}
        )

    def risk_mark(self, equity: float) -> None:
        if hasattr(self, "risk"):
            self.risk.mark_equity(equity, self.clock.now())

    def status(self) -> dict[str, Any]:
        acct = self.broker.account()
        start = self.settings.broker.capital
        return {
            "broker": getattr(self.broker, "name", "?"),
            "mode": self.mode.value,
            "equity": round(acct.equity, 2),
            "cash": round(acct.cash, 2),
            "pnl": round(acct.equity - start, 2),
            "realised": round(self.realised, 2),
            "positions": {s: h.view() for s, h in self.positions.items()},
            "open_orders": [lv.order.client_order_id for lv in self.live.values()],
            **self.stats,
            "refused_by_check": dict(self.risk.refused) if hasattr(self, "risk") else {},
        }
