"""Positions as execution manages them: the broker's qty and average price, our stops and
targets, and how a fill moves a position (average in on adds, realise on reductions,
start again on a flip), the way the broker books it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aegis_actors.brokers import BrokerFill
from aegis_actors.context import posture_params
from aegis_actors.messages import Order, Posture, Side
from aegis_actors.settings import Settings

EPS = 1e-9


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
    exit_attempts: int = 0  # restored from the ledger at start: exit ids stay fresh
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


@dataclass(frozen=True)
class Booked:
    """What one fill did: the position after it (None when flat), and the position it
    closed (with its realised P&L), if it closed one."""

    held: Held | None
    closed: Held | None


def book_fill(positions: dict[str, Held], f: BrokerFill, posture: Posture | None) -> Booked:
    signed = f.qty if f.side == Side.BUY else -f.qty
    old = positions.get(f.symbol)
    if old is None or abs(old.qty) <= EPS:
        new = positions[f.symbol] = Held(f.symbol, signed, f.price, f.ts, posture=posture)
        return Booked(new, None)
    if (old.qty > 0) == (signed > 0):
        new_qty = old.qty + signed
        old.avg_price = (abs(old.qty) * old.avg_price + f.qty * f.price) / abs(new_qty)
        old.qty = new_qty
        return Booked(old, None)
    closed = min(f.qty, abs(old.qty))
    old.realised += closed * (f.price - old.avg_price) * (1 if old.qty > 0 else -1)
    new_qty = old.qty + signed
    if abs(new_qty) <= EPS:
        positions.pop(f.symbol, None)
        return Booked(None, old)
    if (new_qty > 0) != (old.qty > 0):  # flipped through zero: a new position
        new = positions[f.symbol] = Held(f.symbol, new_qty, f.price, f.ts, posture=posture)
        return Booked(new, old)
    old.qty = new_qty
    return Booked(old, None)


def stops_for(posture: Posture | None, settings: Settings, side: Side, avg: float) -> tuple:
    """Stop and target prices from the posture's numbers (SPEC 3) around the entry price."""
    if posture is None:
        return None, None
    p = posture_params(settings, posture)
    if side is Side.BUY:
        return avg * (1 + p.stop_loss), avg * (1 + p.take_profit)
    return avg * (1 - p.stop_loss), avg * (1 - p.take_profit)


def set_stops(held: Held, entry: Order, settings: Settings) -> None:
    """Stops from the posture in force at entry; a decision's own stop or target is
    kept only where it is tighter than the posture's."""
    side = Side.BUY if held.qty > 0 else Side.SELL
    sl, tp = stops_for(entry.posture, settings, side, held.avg_price)
    if sl is not None and entry.stop_loss is not None:
        sl = max(sl, entry.stop_loss) if side is Side.BUY else min(sl, entry.stop_loss)
    if tp is not None and entry.take_profit is not None:
        tp = min(tp, entry.take_profit) if side is Side.BUY else max(tp, entry.take_profit)
    held.stop_loss = sl if sl is not None else entry.stop_loss
    held.take_profit = tp if tp is not None else entry.take_profit
