"""The day's performance report (SPEC 7), computed from the ledger alone.

P&L is average-cost: a fill that reduces a position realises (price - average cost) on the
quantity it closes. Every fill up to the day's end is replayed so a position carried in
from an earlier day closes against its real cost; only the day's fills count toward the
day's figures. Prices between fills come from the decisions' reference prices, so the
equity line and the open positions are marked at the last price the system itself saw
(or at the broker's, when close-day could ask a running process).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aegis_actors.closeday.figures import (
    accuracy,
    alert_counts,
    entry_sizes,
    latency,
    llm_usage,
    order_counts,
)
from aegis_actors.closeday.ledger import DayLedger, as_json
from aegis_actors.closeday.prices import PriceBook
from aegis_actors.settings import Settings

CURVE_POINTS = 1_500  # the equity line drawn; the drawdown is measured on every point


@dataclass
class Holding:
    qty: float = 0.0
    avg: float = 0.0
    trip_pnl: float = 0.0  # realised minus fees since the position was last flat
    trip_posture: str = ""


@dataclass
class Tally:
    realised: float = 0.0
    fees: float = 0.0
    fills: int = 0
    bought: float = 0.0
    sold: float = 0.0
    trades: int = 0
    wins: int = 0
    unrealised: float = 0.0  # of what is still held at the day's end

    def out(self) -> dict[str, Any]:
        return {
            "realised": round(self.realised, 2),
            "unrealised": round(self.unrealised, 2),
            "fees": round(self.fees, 2),
            "net": round(self.realised - self.fees, 2),
            "fills": self.fills,
            "bought_qty": self.bought,
            "sold_qty": self.sold,
            "trades": self.trades,
            "wins": self.wins,
        }


def thin(points: list[tuple[float, float]], most: int) -> list[tuple[float, float]]:
    """At most `most` points: each bucket keeps its lowest and highest (so a dip drawn is
    a dip that happened), the first and the last always."""
    if len(points) <= most:
        return points
    size = -(-len(points) // (most // 2))
    out = [points[0]]
    for i in range(0, len(points), size):
        chunk = points[i : i + size]
        lo, hi = min(chunk, key=lambda p: p[1]), max(chunk, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    out.append(points[-1])
    return out


def _round(v: Any, n: int = 4) -> Any:
    return round(float(v), n) if isinstance(v, int | float) else v


def build(led: DayLedger, s: Settings, marks: dict[str, float] | None = None) -> dict[str, Any]:
    capital = s.broker.capital
    prices = PriceBook()
    for f in led.fills:
        prices.add(f["symbol"], f["ts"], float(f["price"]))
    for d in led.decisions:
        ref = as_json(d.get("decision")).get("reference_price")
        if isinstance(ref, int | float):
            prices.add(d["symbol"], d["created_at"], float(ref))
    prices.done()

    book: dict[str, Holding] = defaultdict(Holding)
    by_symbol: dict[str, Tally] = defaultdict(Tally)
    by_posture: dict[str, Tally] = defaultdict(Tally)
    realised_total = fees_total = 0.0
    curve: list[tuple[float, float]] = []
    last_px: dict[str, float] = {}

    contrib: dict[str, float] = {}  # symbol -> its unrealised P&L now
    unreal_now = 0.0

    def touch(sym: str) -> None:
        """Re-mark one symbol (an event moves one symbol, not the whole book)."""
        nonlocal unreal_now
        h = book.get(sym)
        new = h.qty * (last_px.get(sym, h.avg) - h.avg) if h is not None and h.qty else 0.0
        unreal_now += new - contrib.get(sym, 0.0)
        contrib[sym] = new

    def equity(exact: bool = False) -> float:
        unreal = (
            sum(h.qty * (last_px.get(s, h.avg) - h.avg) for s, h in book.items())
            if exact
            else unreal_now
        )
        return capital + realised_total - fees_total + unreal

    started = False

    def open_day(ts: float) -> None:
        """The opening point: the day's start when positions were carried in, else the
        day's first event (a line flat since midnight tells a trader nothing)."""
        nonlocal started
        started = True
        carried = False
        for sym, h in book.items():
            if h.qty:
                carried = True
                last_px[sym] = prices.at(sym, led.start) or last_px.get(sym, h.avg)
                touch(sym)
        curve.append((led.start if carried else ts, equity()))

    events: list[tuple[float, int, dict[str, Any]]] = [(f["ts"], 1, f) for f in led.fills]
    events += [
        (ts, 0, {"symbol": sym, "price": px})
        for sym, series in prices.series.items()
        for ts, px in series
        if led.start <= ts < led.end
    ]
    events.sort(key=lambda e: (e[0], e[1]))
    unreal_start = 0.0
    for ts, is_fill, ev in events:
        if ts >= led.start and not started:
            open_day(ts)
            unreal_start = curve[0][1] - (capital + realised_total - fees_total)
        sym = ev["symbol"]
        last_px[sym] = float(ev["price"])
        if is_fill:
            order = led.orders.get(ev["client_order_id"], {})
            posture = str(order.get("posture") or "unknown")
            h = book[sym]
            qty, price, fee = float(ev["qty"]), float(ev["price"]), float(ev.get("fee") or 0.0)
            signed = qty if ev.get("side") == "buy" else -qty
            realised = 0.0
            flipped = False
            if h.qty == 0 or (h.qty > 0) == (signed > 0):
                if h.qty == 0:
                    h.trip_pnl, h.trip_posture = 0.0, posture
                h.avg = (abs(h.qty) * h.avg + qty * price) / (abs(h.qty) + qty)
                h.qty += signed
            else:
                closing = min(qty, abs(h.qty))
                realised = closing * (price - h.avg) * (1 if h.qty > 0 else -1)
                h.qty += signed
                if abs(h.qty) < 1e-9:
                    h.qty, h.avg = 0.0, 0.0
                elif (h.qty > 0) == (signed > 0):  # through flat: a new position at this price
                    h.avg, flipped = price, True
            realised_total += realised
            fees_total += fee
            h.trip_pnl += realised - fee
            trip = h.trip_posture or posture
            closed = h.qty == 0 or flipped  # a round trip ends when the position is flat
            if ts >= led.start:
                for t in (by_symbol[sym], by_posture[trip]):
                    t.realised += realised
                    t.fees += fee
                    t.fills += 1
                    if signed > 0:
                        t.bought += qty
                    else:
                        t.sold += qty
                    if closed:
                        t.trades += 1
                        t.wins += int(h.trip_pnl > 0)
            if closed:
                h.trip_pnl, h.trip_posture = 0.0, posture
        touch(sym)
        if ts >= led.start:
            curve.append((ts, equity()))
    if not started:
        open_day(led.start)
        unreal_start = curve[0][1] - (capital + realised_total - fees_total)
    for sym, px in (marks or {}).items():
        last_px[sym] = px
    end_equity = equity(exact=True)
    curve.append((min(led.end, max(curve[-1][0], led.start)), end_equity))

    open_positions = []
    unreal_end = 0.0
    stored = {p["symbol"]: p for p in led.positions}
    for sym, h in sorted(book.items()):
        if not h.qty:
            continue
        mark = last_px.get(sym, h.avg)
        upnl = h.qty * (mark - h.avg)
        unreal_end += upnl
        p = stored.get(sym, {})
        by_symbol[sym].unrealised += upnl
        by_posture[str(p.get("posture") or h.trip_posture or "unknown")].unrealised += upnl
        open_positions.append(
            {
                "symbol": sym,
                "qty": h.qty,
                "avg_price": round(h.avg, 4),
                "mark": mark,
                "unrealised": round(upnl, 2),
                "posture": p.get("posture") or h.trip_posture,
                "stop_loss": _round(p.get("stop_loss")),
                "take_profit": _round(p.get("take_profit")),
            }
        )
    for sym, p in sorted(stored.items()):  # held per the ledger without fills to show it
        if book.get(sym) is not None and book[sym].qty:
            continue  # (a position reconciled from the broker at a start, say)
        qty, avg = float(p.get("qty") or 0), float(p.get("avg_price") or 0)
        mark = last_px.get(sym, avg)
        open_positions.append(
            {
                "symbol": sym,
                "qty": qty,
                "avg_price": round(avg, 4),
                "mark": mark,
                "unrealised": round(qty * (mark - avg), 2),
                "posture": p.get("posture"),
                "stop_loss": _round(p.get("stop_loss")),
                "take_profit": _round(p.get("take_profit")),
                "note": "in the positions table, no fills in the ledger",
            }
        )

    realised_day = sum(t.realised for t in by_symbol.values())
    fees_day = sum(t.fees for t in by_symbol.values())
    trades = sum(t.trades for t in by_symbol.values())
    wins = sum(t.wins for t in by_symbol.values())
    peak, max_dd, max_dd_pct = -math.inf, 0.0, 0.0
    for _ts, eq in curve:
        peak = max(peak, eq)
        if peak - eq > max_dd:
            max_dd, max_dd_pct = peak - eq, (peak - eq) / peak * 100 if peak > 0 else 0.0

    return {
        "date": led.day.isoformat(),
        "store": led.kind,
        "capital": capital,
        "pnl": {
            "realised": round(realised_day, 2),
            "fees": round(fees_day, 2),
            "unrealised": round(unreal_end, 2),
            "unrealised_at_open": round(unreal_start, 2),
            "net": round(realised_day - fees_day + unreal_end - unreal_start, 2),
            "equity_open": round(curve[0][1], 2),
            "equity_close": round(end_equity, 2),
            "max_drawdown": round(max_dd, 2),
            "max_drawdown_pct": round(max_dd_pct, 3),
        },
        "trades": trades,
        "wins": wins,
        "win_rate": round(wins / trades, 4) if trades else None,
        "fills": sum(t.fills for t in by_symbol.values()),
        "by_symbol": {k: v.out() for k, v in sorted(by_symbol.items())},
        "by_posture": {k: v.out() for k, v in sorted(by_posture.items())},
        "open_positions": open_positions,
        "equity_curve": [[round(t, 3), round(e, 2)] for t, e in thin(curve, CURVE_POINTS)],
        "orders": order_counts(led),
        "accuracy": accuracy(led, s, prices),
        "llm": llm_usage(led, s),
        "latency": latency(led),
        "alerts": alert_counts(led),
        "mode_changes": [
            {k: c.get(k) for k in ("ts", "old", "new", "reason")} for c in led.mode_changes
        ],
        "posture_changes": [
            {k: c.get(k) for k in ("ts", "old", "new", "reason")} for c in led.posture_changes
        ],
        "entry_size": entry_sizes(led, s),
    }
