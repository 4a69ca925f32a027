"""The sweep, every few seconds: cancel entries past their time to live, ask the broker
about orders whose answer was lost (`unknown` lasts only until it answers) and about
orders that ended at the broker unseen, time out unanswered price confirmations, and in
`safe` retry the liquidation a rate limit or a broker error left open."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_actors.brokers import BrokerError
from aegis_actors.messages import OPEN_STATUSES, OrderStatus, OrderUpdate, TradingMode

if TYPE_CHECKING:
    from aegis_actors.execution.core import ExecutionCore

_ENDED_UNFILLED = frozenset({OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


def sweep(core: ExecutionCore) -> None:
    now = core.now()
    try:
        core.expire_entries(now)
    except BrokerError as exc:
        core.log.warning("stale entries not cancelled yet: {}", exc)
    core.resolve(now)
    timeout = core.settings.roles.verifier.timeout_s
    for symbol, (_rid, at) in list(core.confirm_asked.items()):
        if now - at >= timeout:
            core.release(symbol, False, f"no answer within {timeout}s")
    if core.mode is TradingMode.SAFE:
        core.liquidate()  # retry what a rate limit or a broker error left open
    core.publish_account()


def expire_entries(core: ExecutionCore, now: float) -> None:
    for coid, live in list(core.live.items()):
        if (
            live.order.intent == "entry"
            and now - live.order.created_at >= core.settings.risk.entry_ttl_s
            and core.broker.cancel(coid)
        ):
            core.live.pop(coid, None)
            core.record(
                OrderUpdate(
                    client_order_id=coid,
                    status=OrderStatus.CANCELLED,
                    ts=now,
                    error="entry not filled in time",
                )
            )


def resolve(core: ExecutionCore, now: float) -> None:
    """Ask the broker about orders whose answer was lost, and orders that ended at the
    broker without us seeing it (expired, cancelled there), so the ledger stays true."""
    try:
        for coid, live in list(core.unknown.items()):
            o = core.broker.order(coid)
            core.unknown.pop(coid)
            if o is None:
                core.record(
                    OrderUpdate(
                        client_order_id=coid,
                        status=OrderStatus.CANCELLED,
                        ts=now,
                        error="never reached the broker (its answer was lost)",
                    )
                )
                core.clear_exit(live.order.symbol, coid)
                continue
            core.record(
                OrderUpdate(
                    client_order_id=coid,
                    status=o.status,
                    ts=now,
                    broker_order_id=o.broker_order_id,
                )
            )
            if o.status in OPEN_STATUSES or o.filled_qty > live.filled:
                core.live[coid] = live
            else:
                core.clear_exit(live.order.symbol, coid)
        core.apply_fills(core.broker.poll_fills())
        for coid, live in list(core.live.items()):
            o = core.broker.order(coid)
            if o is not None and o.status in _ENDED_UNFILLED:
                core.live.pop(coid)
                core.record(OrderUpdate(client_order_id=coid, status=o.status, ts=now))
                core.clear_exit(live.order.symbol, coid)
    except BrokerError as exc:
        core.log.warning("order resolution deferred: {}", exc)


def clear_exit(core: ExecutionCore, symbol: str, coid: str) -> None:
    h = core.positions.get(symbol)
    if h is not None and h.exiting == coid:
        h.exiting = ""
