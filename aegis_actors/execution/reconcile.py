"""Start-up reconciliation: make the ledger agree with the broker, logging each difference.

The broker is the truth for what happened to an order and for positions; the ledger is
the truth for what we meant (stops, targets, posture, intent). So on start:
- an order the ledger has as open but the broker never saw (the process died between
  the write-ahead and the send) is marked cancelled, never resent: its decision is stale;
- an order whose status or filled qty differ takes the broker's, and fills the ledger
  missed are recovered from the broker's fill history when it has one;
- an order working at the broker is tracked again, so its later fills update its row;
- an order working at the broker that the ledger lacks is written into it;
- positions are rebuilt from the broker, with stops and targets from the ledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aegis_actors.brokers import OPEN_STATUSES, BrokerError, BrokerFill, OpenOrder
from aegis_actors.execution.book import Live
from aegis_actors.execution.core import ExecutionCore, fill_message
from aegis_actors.execution.positions import Held, stops_for
from aegis_actors.execution.risk import client_order_id
from aegis_actors.messages import (
    DurableState,
    Fill,
    Ledger,
    LoadLedger,
    LoadState,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionClosed,
    PositionUpdate,
    Posture,
    RecordFill,
    Side,
    WriteAhead,
    WriteAheadAck,
    WriteOrder,
)
from aegis_actors.runtime import POSTURE, STORE

EPS = 1e-9
READ_TIMEOUT_S = 20.0
LATER_READ_S = 1.0  # the store may be replaying a long spool first: wait for the ledger


@dataclass
class Report:
    """What reconciliation found; `differences` are the lines it logged."""

    differences: list[str] = field(default_factory=list)
    tracked: list[str] = field(default_factory=list)  # orders working at the broker
    recovered_fills: int = 0
    ledger_read: bool = True

    def differ(self, ex: ExecutionCore, line: str) -> None:
        self.differences.append(line)
        ex.log.warning("reconcile: {}", line)
        ex.metrics.errors.labels("reconcile_difference").inc()


def reconcile_on_start(ex: ExecutionCore) -> Report:
    """Run once by the execution actor on start, on its core (not the actor: the core's
    ports reach the store, so reconciliation and the actor do not import each other)."""
    report = Report()
    now = ex.now()
    broker = ex.broker

    def differ(line: str) -> None:
        report.differ(ex, line)

    try:
        state = ex.ports.ask(STORE, LoadState(symbol=""), READ_TIMEOUT_S, DurableState)
        ledger = ex.ports.ask(STORE, LoadLedger(), READ_TIMEOUT_S, Ledger)
        durable = state.positions
    except Exception as exc:
        ex.log.error("reconcile: ledger unavailable ({}); positions from the broker only", exc)
        report.ledger_read = False
        durable, ledger = {}, Ledger()

    # -- positions: the broker's qty and price, the ledger's stops and targets ----------
    held_at_broker = {p.symbol: p for p in broker.positions()}
    for p in held_at_broker.values():
        d = durable.get(p.symbol, {})
        held = ex.positions[p.symbol] = Held(
            symbol=p.symbol,
            qty=p.qty,
            avg_price=p.avg_price,
            opened_at=float(d.get("opened_at") or now),
            posture=Posture(d["posture"]) if d.get("posture") else None,
            stop_loss=d.get("stop_loss"),
            take_profit=d.get("take_profit"),
            exit_attempts=ledger.exit_attempts.get(p.symbol, 0),
        )
        changed = not d or not math.isclose(float(d.get("qty") or 0), p.qty)
        if changed:
            differ(f"position {p.symbol}: ledger qty {d.get('qty')} != broker {p.qty}; broker wins")
        if held.stop_loss is None and held.take_profit is None:
            differ(give_stops(ex, held))  # never adopt a position no exit would ever close
            changed = True
        if changed:
            ex.persist_position(held)
    for symbol in sorted(set(durable) - set(held_at_broker)):
        if broker.durable:
            differ(f"position {symbol}: in the ledger, not at the broker; closed in the ledger")
            ex.ports.send(STORE, PositionUpdate(symbol=symbol, qty=0.0, avg_price=0.0, ts=now))
        else:
            differ(close_vanished(ex, durable[symbol], now))

    # -- orders the ledger has as open --------------------------------------------------
    known = {row["client_order_id"] for row in ledger.orders}
    ledger_orders(ex, ledger, report, now)

    # -- orders working at the broker that the ledger does not list as open -------------
    for o in broker.open_orders():
        if o.client_order_id in known:
            continue
        order = order_from_broker(o, now)
        try:
            written = ex.ports.ask(STORE, WriteOrder(order=order), READ_TIMEOUT_S, WriteAheadAck)
        except Exception as exc:  # the store is busy or down: the order is still followed
            written = WriteAheadAck(status=WriteAhead.ERROR, detail=str(exc))
        if written.status is WriteAhead.NEW:
            differ(f"order {o.client_order_id} working at the broker, not in the ledger: added")
        else:
            differ(f"order {o.client_order_id}: ledger has it final, broker still working it")
        ex.ports.send(
            STORE,
            OrderUpdate(
                client_order_id=o.client_order_id,
                status=o.status,
                ts=now,
                broker_order_id=o.broker_order_id,
                filled_qty=o.filled_qty,
            ),
        )
        track(ex, order, o, None, report)

    # Fills the broker has not handed to this process yet happened before this start: the
    # broker's positions and orders adopted above already include them, so they are
    # recorded (the store keeps each fill id once) but not booked on the positions again.
    for f in broker.poll_fills():
        ex.ports.send(STORE, RecordFill(fill=fill_message(f)))

    if report.differences:
        ex.log.warning("reconcile: {} difference(s) fixed in the ledger", len(report.differences))
    else:
        ex.log.info(
            "reconcile: ledger matches the broker ({} positions, {} working orders)",
            len(ex.positions),
            len(report.tracked),
        )
    ex.publish_positions()
    return report


def ledger_orders(ex: ExecutionCore, ledger: Ledger, report: Report, now: float) -> None:
    """Each order the ledger has as open (or filled short of its fills), against the
    broker: never sent -> cancelled; status, fills and filled qty from the broker; still
    working -> followed again."""
    broker = ex.broker
    for row in ledger.orders:
        coid = row["client_order_id"]
        at_broker = broker.order(coid)
        if at_broker is None:
            report.differ(
                ex,
                f"order {coid} ({row['status']}) never reached the broker: cancelled, not resent",
            )
            ex.ports.send(
                STORE,
                OrderUpdate(
                    client_order_id=coid,
                    status=OrderStatus.CANCELLED,
                    ts=now,
                    error="never reached the broker (found at start-up reconciliation)",
                ),
            )
            continue
        fills = broker.fills_for(coid)
        recorded = float(ledger.filled.get(coid, 0.0))
        if at_broker.filled_qty > recorded + EPS:
            seen = set(ledger.fill_ids.get(coid, []))
            missing = unbooked(fills, seen, at_broker.filled_qty - recorded)
            for f in missing:
                ex.ports.send(STORE, RecordFill(fill=fill_message(f)))
            report.recovered_fills += len(missing)
            report.differ(
                ex,
                f"order {coid}: broker filled {at_broker.filled_qty}, ledger has fills for "
                f"{recorded}; {len(missing)} fill(s) recovered from the broker",
            )
        avg = avg_price(fills) or row.get("avg_fill_price")
        if (
            at_broker.status.value != row["status"]
            or not math.isclose(at_broker.filled_qty, float(row.get("filled_qty") or 0.0))
            or at_broker.broker_order_id != row.get("broker_order_id")
        ):
            report.differ(
                ex,
                f"order {coid}: ledger {row['status']} filled {row.get('filled_qty')} -> "
                f"broker {at_broker.status.value} filled {at_broker.filled_qty}",
            )
            ex.ports.send(
                STORE,
                OrderUpdate(
                    client_order_id=coid,
                    status=at_broker.status,
                    ts=now,
                    broker_order_id=at_broker.broker_order_id,
                    filled_qty=at_broker.filled_qty,
                    avg_fill_price=avg if at_broker.filled_qty > 0 else None,
                ),
            )
        if at_broker.status in OPEN_STATUSES:
            track(ex, order_from_row(row, now), at_broker, avg, report)


def reconcile_later(ex: ExecutionCore, report: Report) -> bool:
    """The ledger was unreadable at start (a store still replaying its spool, or down):
    the orders part is done as soon as it can be read. True once done."""
    try:
        ledger = ex.ports.ask(STORE, LoadLedger(), LATER_READ_S, Ledger)
    except Exception:
        return False
    before = len(report.differences)
    try:
        ledger_orders(ex, ledger, report, ex.now())
    except BrokerError as exc:
        ex.log.warning("reconcile: broker unavailable for the late ledger check: {}", exc)
        return False
    report.ledger_read = True
    ex.log.warning(
        "reconcile: ledger read late; {} difference(s) fixed", len(report.differences) - before
    )
    return True


def give_stops(ex: ExecutionCore, held: Held) -> str:
    """A position the ledger holds without stops (its write was lost in an outage, or the
    broker has one the ledger never saw) gets the stops of its posture, or of the posture
    in force, around the broker's average price."""
    posture = held.posture or ex.ports.current_posture() or Posture.DEFENSIVE
    held.posture = posture
    side = Side.BUY if held.qty > 0 else Side.SELL
    held.stop_loss, held.take_profit = stops_for(posture, ex.settings, side, held.avg_price)
    return (
        f"position {held.symbol} had no stops in the ledger: stop-loss {held.stop_loss:.4f}, "
        f"take-profit {held.take_profit:.4f} from the {posture} posture"
    )


def close_vanished(ex: ExecutionCore, row: dict[str, Any], now: float) -> str:
    """A throwaway (in-memory) paper book died with the last run: its positions are closed
    in the ledger at the last known price with a booked order, fill and P&L, never
    silently dropped. Returns the line that says so."""
    symbol = row["symbol"]
    qty = float(row.get("qty") or 0.0)
    avg = float(row.get("avg_price") or 0.0)
    seen = ex.ports.recent_price(symbol)
    price, source = (seen, "last price") if seen else (avg, "entry price, none later")
    side = Side.SELL if qty > 0 else Side.BUY
    coid = client_order_id(f"restart-close|{symbol}|{row.get('opened_at')}|{ex.run_id}", "exit")
    why = "closed at start: the in-memory paper book did not survive the restart"
    order = Order(
        client_order_id=coid,
        decision_id="restart-close",
        event_id="",
        symbol=symbol,
        side=side,
        qty=abs(qty),
        order_type=OrderType.MARKET,
        intent="exit",
        posture=Posture(row["posture"]) if row.get("posture") else None,
        created_at=now,
    )
    ex.ports.ask(STORE, WriteOrder(order=order), READ_TIMEOUT_S, WriteAheadAck)
    ex.ports.send(
        STORE,
        OrderUpdate(
            client_order_id=coid,
            status=OrderStatus.FILLED,
            ts=now,
            filled_qty=abs(qty),
            avg_fill_price=price,
            error=why,
        ),
    )
    fill = Fill(
        fill_id=f"{coid}-1",
        client_order_id=coid,
        symbol=symbol,
        side=side,
        qty=abs(qty),
        price=price,
        fee=0.0,
        ts=now,
    )
    ex.ports.send(STORE, RecordFill(fill=fill))
    ex.ports.send(STORE, PositionUpdate(symbol=symbol, qty=0.0, avg_price=0.0, ts=now))
    pnl = (price - avg) * qty
    pnl_pct = (price / avg - 1.0) * (1 if qty > 0 else -1) * 100 if avg else 0.0
    ex.realised += pnl
    ex.ports.send(
        POSTURE,
        PositionClosed(symbol=symbol, reason="restart", pnl=pnl, pnl_pct=pnl_pct, ts=now),
    )
    return (
        f"position {symbol}: {why}; closed in the ledger at {price} ({source}), "
        f"pnl {pnl:.2f} ({pnl_pct:.2f}%)"
    )


def track(
    ex: ExecutionCore, order: Order, at_broker: OpenOrder, avg: float | None, report: Report
) -> None:
    """Follow an order still working at the broker, as if this process had placed it."""

    price = avg or order.limit_price or 0.0
    ex.live[order.client_order_id] = Live(
        order, filled=at_broker.filled_qty, notional=at_broker.filled_qty * price
    )
    held = ex.positions.get(order.symbol)
    if order.intent == "exit" and held is not None:
        held.exiting = order.client_order_id
    report.tracked.append(order.client_order_id)


def order_from_row(row: dict[str, Any], now: float) -> Order:
    return Order(
        client_order_id=row["client_order_id"],
        decision_id=row.get("decision_id") or "",
        event_id=row.get("event_id") or "",
        symbol=row["symbol"],
        side=Side(row["side"]),
        qty=float(row["qty"]),
        order_type=OrderType(row.get("order_type") or "market"),
        limit_price=row.get("limit_price"),
        stop_loss=row.get("stop_loss"),
        take_profit=row.get("take_profit"),
        intent=row.get("intent") or "entry",
        posture=Posture(row["posture"]) if row.get("posture") else None,
        status=row["status"],
        created_at=float(row.get("created_at") or now),
    )


def order_from_broker(o: OpenOrder, now: float) -> Order:
    return Order(
        client_order_id=o.client_order_id,
        decision_id="",
        event_id="",
        symbol=o.symbol,
        side=Side(o.side.value),
        qty=o.qty,
        order_type=OrderType(o.order_type.value),
        limit_price=o.limit_price,
        intent="entry",
        status=o.status,
        created_at=now,
    )


def unbooked(fills: list[BrokerFill], seen: set[str], gap: float) -> list[BrokerFill]:
    """The broker's fills the ledger lacks, newest first, up to the qty it lacks. A fill
    the ledger took by polling can span several of the venue's (two partial fills between
    two polls): the older ones then look missing though their qty is booked."""
    out: list[BrokerFill] = []
    for f in reversed([f for f in fills if f.fill_id not in seen]):
        if f.qty <= gap + EPS:
            out.append(f)
            gap -= f.qty
    return out[::-1]


def avg_price(fills: list[BrokerFill]) -> float | None:
    qty = sum(f.qty for f in fills)
    return sum(f.qty * f.price for f in fills) / qty if qty > 0 else None
