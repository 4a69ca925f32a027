"""What each trading mode does to orders and positions (ARCHITECTURE "Trading modes"):
`limited` cancels working entries, `safe` cancels everything and closes every position,
`halted` and `shutdown` cancel everything and send nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_actors.brokers import BrokerError
from aegis_actors.execution.positions import Held
from aegis_actors.messages import ModeChange, OrderStatus, OrderUpdate, Snapshot, TradingMode

if TYPE_CHECKING:
    from aegis_actors.execution.core import ExecutionCore

_EPS = 1e-9


def mode_change(core: ExecutionCore, m: ModeChange) -> None:
    if m.new is TradingMode.SHUTDOWN and core.mode.rank < TradingMode.SAFE.rank:
        # shutdown comes after safe: close everything while exits are still allowed
        core.mode_change(m.model_copy(update={"new": TradingMode.SAFE}))
    core.mode = m.new  # a repeated broadcast (we may have moved first) is harmless
    if m.new is TradingMode.LIMITED:
        core.cancel_open(f"mode {m.new}", entries_only=True)
        core.drop_awaiting(f"mode {m.new}", entries_only=True)
    if m.new in (TradingMode.SAFE, TradingMode.HALTED, TradingMode.SHUTDOWN):
        core.cancel_open(f"mode {m.new}")
        core.drop_awaiting(f"mode {m.new}")
    if m.new is TradingMode.SAFE:
        core.liquidate()
    if m.new in (TradingMode.SAFE, TradingMode.SHUTDOWN):
        core.record(Snapshot(kind=f"mode_{m.new}", data=core.status(), ts=core.now()))


def liquidate(core: ExecutionCore) -> None:
    """Close every position the broker holds (tracked or not), one exit each."""
    try:
        for p in core.broker.positions():
            if p.symbol not in core.positions and abs(p.qty) > _EPS:
                core.positions[p.symbol] = Held(p.symbol, p.qty, p.avg_price, core.now())
    except BrokerError as exc:
        core.log.error("liquidation: broker positions unavailable: {}", exc)
    for held in list(core.positions.values()):
        if held.qty != 0 and not held.exiting:
            core.exit(held, "liquidation")


def cancel_open(core: ExecutionCore, why: str, *, entries_only: bool = False) -> list[str]:
    """Cancel open orders at the broker; returns the client order ids cancelled."""
    try:
        if entries_only:
            cancelled = [
                coid
                for coid, lv in list(core.live.items())
                if lv.order.intent == "entry" and core.broker.cancel(coid)
            ]
        else:
            cancelled = core.broker.cancel_all()
    except BrokerError as exc:
        core.log.error("cancel failed ({}): {}", why, exc)
        return []
    now = core.now()
    for coid in cancelled:
        core.live.pop(coid, None)
        for h in core.positions.values():
            if h.exiting == coid:
                h.exiting = ""
        core.record(
            OrderUpdate(client_order_id=coid, status=OrderStatus.CANCELLED, ts=now, error=why)
        )
    if cancelled:
        core.log.warning("cancelled {} open orders: {}", len(cancelled), why)
    return cancelled
