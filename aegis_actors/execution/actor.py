"""The execution actor: a thin shell around `ExecutionCore`.

It turns messages into core calls and gives the core its ports: tells to named actors,
the write-ahead ask to the store, the posture in force from the cache, and the cache for
positions and the account. Order logic lives in the core, where it is property-tested.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic_core import from_json

from aegis_actors.base import AegisActor
from aegis_actors.brokers import Broker
from aegis_actors.context import K_ACCOUNT, K_MODE, K_POSITIONS, K_POSTURE
from aegis_actors.execution.core import ExecutionCore, Held, Live, Pending
from aegis_actors.execution.reconcile import reconcile_later, reconcile_on_start
from aegis_actors.messages import (
    CancelOpenOrders,
    CancelReply,
    Decision,
    GetMode,
    ModeChange,
    ModeReply,
    Order,
    Posture,
    PriceConfirmation,
    Tick,
    Ticks,
    TradingMode,
    WriteAhead,
    WriteAheadAck,
    WriteAheadExpired,
    WriteOrder,
)
from aegis_actors.runtime import STORE, WATCHDOG

__all__ = ["Execution", "Held", "Live", "Pending"]

WRITE_AHEAD_TIMEOUT_S = 2.0
SWEEP_EVERY_S = 5.0
MODE_ASK_S = 5.0


_POSTURE_KEY = [K_POSTURE]


@dataclass(frozen=True)
class _Sweep:
    pass


def _posture_of(doc: Any) -> Posture | None:
    try:
        return Posture(doc["posture"]) if doc else None
    except (KeyError, ValueError, TypeError):
        return None


class Execution(AegisActor):
    def __init__(self, ctx: Any, rt: Any, broker: Broker) -> None:
        super().__init__(ctx, rt)
        self.broker = broker

    def on_start(self) -> None:
        self._posture: tuple[str | None, Posture | None] | None = None  # (text, posture)
        mode = self.mode_in_force()
        self.core = ExecutionCore(
            self.broker,
            self.settings,
            self.clock.now,
            self,
            self.metrics,
            self.log,
            mode,
            run_id=self.rt.run_id,
        )
        self.reconciled = reconcile_on_start(self.core)  # execution/reconcile.py
        self.core.publish_account()
        self.after(SWEEP_EVERY_S, _Sweep())

    def mode_in_force(self) -> TradingMode:
        """The watchdog's mode, asked (not read from the cache, where a previous run's
        mode may linger until the watchdog has started)."""
        try:
            return self.ask(WATCHDOG, GetMode(), MODE_ASK_S, ModeReply).mode
        except Exception as exc:
            cached = self.rt.cache.get_json(K_MODE) or "normal"
            self.log.warning("watchdog not answering ({}): mode {} from the cache", exc, cached)
            return TradingMode(cached)

    # -- messages --------------------------------------------------------------------

    def on_Decision(self, d: Decision) -> None:
        self.core.decide(d)

    def on_Tick(self, t: Tick) -> None:
        self.core.tick(t)

    def on_Ticks(self, batch: Ticks) -> None:
        """A feed batch: every print in order, as if each came alone."""
        on_price = self.core.price
        for symbol, price, _volume, ts, open_price in batch.ticks:
            on_price(symbol, price, ts, open_price)

    def on_ModeChange(self, m: ModeChange) -> None:
        self.core.mode_change(m)

    def on_PriceConfirmation(self, c: PriceConfirmation) -> None:
        self.core.price_confirmed(c)

    def on_CancelOpenOrders(self, msg: CancelOpenOrders) -> CancelReply:
        """close-day: cancel what is unfilled; say what was cancelled and what stays open."""
        orders = {o.client_order_id: o for o in self.broker.open_orders()}
        cancelled = self.core.cancel_open(msg.reason)
        still = [o.client_order_id for o in self.broker.open_orders()]
        return CancelReply(
            cancelled=[
                {"client_order_id": c, "symbol": o.symbol, "side": str(o.side), "qty": o.qty}
                if (o := orders.get(c)) is not None
                else {"client_order_id": c}
                for c in cancelled
            ],
            still_open=still,
            marks={s: p for s in self.core.positions if (p := self.core.prices.get(s)) is not None},
        )

    def on__Sweep(self, _msg: _Sweep) -> None:
        try:
            if not self.reconciled.ledger_read:  # unreadable at start: check the orders now
                reconcile_later(self.core, self.reconciled)
            self.core.sweep()
        finally:
            self.after(SWEEP_EVERY_S, _Sweep())

    # -- ports of the core -----------------------------------------------------------

    def write_ahead(self, order: Order) -> WriteAheadAck:
        """Ask the store to write `order` ahead; a deadline on both sides: past it the
        store does not write it, and a row it wrote late is cancelled, never sent."""
        deadline = time.time() + WRITE_AHEAD_TIMEOUT_S  # wall time, as the ask's timeout
        try:
            msg = WriteOrder(order=order, deadline=deadline)
            return self.ask(STORE, msg, WRITE_AHEAD_TIMEOUT_S, WriteAheadAck)
        except Exception as exc:  # no answer, or one of the wrong type (WrongReply): not sent
            why = f"write-ahead not confirmed within {WRITE_AHEAD_TIMEOUT_S:g}s; never sent"
            self.send(
                STORE,
                WriteAheadExpired(
                    client_order_id=order.client_order_id, reason=why, ts=self.clock.now()
                ),
            )
            detail = f"store unreachable: {exc}"
            return WriteAheadAck(status=WriteAhead.ERROR, detail=detail)

    def current_posture(self) -> Posture | None:
        """The posture document's, parsed again only when its text changed (read per
        entry decision; it changes a few times a day)."""
        raw = self.rt.cache.get_many_raw(_POSTURE_KEY)[0]
        held = self._posture
        if held is not None and held[0] == raw:
            return held[1]
        posture = _posture_of(None if raw is None else from_json(raw))
        self._posture = (raw, posture)
        return posture

    def run_stopping(self) -> bool:
        return self.rt.stopping.is_set()

    def publish(self, positions: dict[str, Any], account: dict[str, Any]) -> None:
        self.rt.cache.set_json(K_POSITIONS, positions)
        self.rt.cache.set_json(K_ACCOUNT, account)

    def recent_price(self, symbol: str) -> float | None:
        seen = self.rt.cache.prices(symbol, 1)
        return seen[-1][1] if seen else None

    @property
    def mode(self) -> TradingMode:
        return self.core.mode

    def status(self) -> dict[str, Any]:
        return self.core.status()
