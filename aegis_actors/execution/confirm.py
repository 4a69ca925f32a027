"""Orders held for the verifier (SPEC 4.3): broker and feed prices differ enough that
the verifier must confirm the symbol's price first. The order waits in the book's
`awaiting`; the verifier's answer (or its timeout, from the sweep) releases it through
the gate again, or refuses it."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from aegis_actors.execution.book import Pending
from aegis_actors.execution.mismatch import diff_pct
from aegis_actors.execution.results import OrderDenied, Submitted, in_flight
from aegis_actors.messages import ConfirmPrice, PriceConfirmation
from aegis_actors.runtime import VERIFIER

if TYPE_CHECKING:
    from aegis_actors.execution.core import ExecutionCore


def hold_for_verifier(core: ExecutionCore, p: Pending, now: float) -> None:
    symbol = p.order.symbol
    core.awaiting.setdefault(symbol, []).append(p)
    if symbol in core.confirm_asked:
        return
    broker_price = core.broker.last_price(symbol) or 0.0
    feed_price = core.prices.get(symbol) or 0.0
    request_id = "cp-" + uuid.uuid4().hex[:12]
    core.confirm_asked[symbol] = (request_id, now)
    pct = diff_pct(broker_price, feed_price) if feed_price else 0.0
    core.log.warning(
        "{}: broker {} vs feed {} ({:.2f}%): orders held for the verifier",
        symbol,
        broker_price,
        feed_price,
        pct,
    )
    core.ports.send(
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


def price_confirmed(core: ExecutionCore, c: PriceConfirmation) -> None:
    asked = core.confirm_asked.get(c.symbol)
    if asked is None or asked[0] != c.request_id:
        core.log.info("late price confirmation for {} ignored", c.symbol)
        return
    core.release(c.symbol, c.approve, c.reason)


def release(core: ExecutionCore, symbol: str, approve: bool, reason: str) -> None:
    now = core.now()
    core.confirm_asked.pop(symbol, None)
    held = core.awaiting.pop(symbol, [])
    if approve:
        core.guard.confirm(symbol, now)
        core.log.info("verifier confirmed {}: {}", symbol, reason)
    for p in held:
        result: Submitted
        if approve:
            result = core.submit(p.order, p.reason, p.decision)
        else:
            denial = OrderDenied("mismatch", f"verifier did not confirm: {reason}")
            result = core.denied(p.order, denial)
        if p.order.intent == "exit":
            h = core.positions.get(symbol)
            if h is not None and not in_flight(result):
                h.exiting = ""
        if p.decision is not None:
            core.finish(p.decision, p.order, result)


def drop_awaiting(core: ExecutionCore, why: str, *, entries_only: bool = False) -> None:
    for symbol in list(core.awaiting):
        keep = [p for p in core.awaiting[symbol] if entries_only and p.order.intent == "exit"]
        for p in core.awaiting[symbol]:
            if p in keep:
                continue
            if p.order.intent == "exit" and symbol in core.positions:
                core.positions[symbol].exiting = ""
            if p.decision is not None:
                core.finish(p.decision, p.order, OrderDenied("mode", why))
        if keep:
            core.awaiting[symbol] = keep
        else:
            core.awaiting.pop(symbol)
            core.confirm_asked.pop(symbol, None)
