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
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aegis_actors.closeday.ledger import DayLedger, as_json
from aegis_actors.settings import Settings
from aegis_actors.watchdog.accuracy import judge_targets, targets_of
from aegis_actors.watchdog.sla import STAGES

FAILED = ("rejected", "error")
CURVE_POINTS = 1_500  # the equity line drawn; the drawdown is measured on every point
ROLES = ("analyst", "verifier", "commander")


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


@dataclass
class PriceBook:
    """The last known price of each symbol at any time, from fills and decisions."""

    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, symbol: str, ts: float, price: float) -> None:
        if price > 0 and math.isfinite(price):
            self.series.setdefault(symbol, []).append((ts, price))

    def done(self) -> None:
        for s in self.series.values():
            s.sort()

    def at(self, symbol: str, ts: float) -> float | None:
        s = self.series.get(symbol) or []
        i = bisect_right(s, (ts, math.inf))
        return s[i - 1][1] if i else None

    def after(self, symbol: str, ts: float) -> float | None:
        s = self.series.get(symbol) or []
        i = bisect_right(s, (ts, math.inf))
        return s[i][1] if i < len(s) else None


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


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))
    return round(v[k], 3)


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


def order_counts(led: DayLedger) -> dict[str, Any]:
    by_status: dict[str, int] = defaultdict(int)
    for o in led.day_orders:
        by_status[str(o.get("status"))] += 1
    return {"total": len(led.day_orders), "by_status": dict(sorted(by_status.items()))}


def accuracy(led: DayLedger, s: Settings, prices: PriceBook) -> dict[str, Any]:
    """SPEC 5.3 over the day: each call judged on the first price seen a horizon later."""
    w = s.watchdog
    hits = n = veto_hits = veto_n = 0
    for d in led.decisions:
        a = as_json(d.get("analysis"))
        direction = a.get("direction")
        if direction not in ("up", "down", "flat"):
            continue
        ts, sym = d["created_at"], d["symbol"]
        ref = as_json(d.get("decision")).get("reference_price") or prices.at(sym, ts)
        later = prices.after(sym, ts + w.accuracy_horizon_s - 1e-9)
        if not ref or not later:
            continue
        move = (later / ref - 1.0) * 100.0
        realised = (
            "flat" if abs(move) < w.accuracy_flat_band_pct else ("up" if move > 0 else "down")
        )
        n += 1
        hits += int(realised == direction)
        if d.get("vetoed") and direction in ("up", "down"):
            veto_n += 1
            veto_hits += int(move < 0 if direction == "up" else move > 0)
    sent = [o for o in led.day_orders if o.get("status") not in ("new",)]
    bad = sum(1 for o in sent if o.get("status") in FAILED)
    rates = {
        "analysis": (hits / n if n else None, n),
        "veto": (veto_hits / veto_n if veto_n else None, veto_n),
        "execution": ((len(sent) - bad) / len(sent) if sent else None, len(sent)),
    }
    return {
        "targets": [
            {**t.__dict__, "line": t.line()}
            for t in judge_targets(rates, targets_of(w), w.accuracy_min_samples)
        ],
        "horizon_s": w.accuracy_horizon_s,
    }


def llm_usage(led: DayLedger, s: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role in ROLES:
        cfg = getattr(s.roles, role)
        calls = tin = tout = 0
        models: set[str] = set()
        for d in led.decisions:
            tok = as_json(d.get("tokens")).get(role)
            if not isinstance(tok, dict):
                continue
            calls += 1
            tin += int(tok.get("input", 0))
            tout += int(tok.get("output", 0))
            m = as_json(d.get("models")).get(role)
            if m:
                models.add(str(m))
        cost = tin / 1000 * cfg.price_in_per_1k + tout / 1000 * cfg.price_out_per_1k
        out[role] = {
            "backend": cfg.backend,
            "models": sorted(models),
            "calls": calls,
            "tokens_in": tin,
            "tokens_out": tout,
            "cost_usd": round(cost, 6),
        }
    out["total_cost_usd"] = round(sum(float(d.get("cost_usd") or 0) for d in led.decisions), 6)
    return out


def latency(led: DayLedger) -> dict[str, Any]:
    per: dict[str, list[float]] = defaultdict(list)
    for d in led.decisions:
        for stage, ms in as_json(d.get("latency_ms")).items():
            if isinstance(ms, int | float):
                per[stage].append(float(ms))
    out = {}
    for stage, (_a, _b, sla) in STAGES.items():
        v = per.get(stage, [])
        row: dict[str, Any] = {
            "count": len(v),
            "p50_ms": _pct(v, 50),
            "p95_ms": _pct(v, 95),
            "p99_ms": _pct(v, 99),
            "max_ms": round(max(v), 3) if v else 0.0,
            "source": "decisions",
        }
        runs = [
            r[stage]
            for r in led.run_latency
            if isinstance(r.get(stage), dict) and r[stage].get("count")
        ]
        if not v and runs:  # stages the decision rows do not carry: the runs' histograms
            row = {
                "count": sum(int(r["count"]) for r in runs),
                **{k: round(max(float(r[k]) for r in runs), 3) for k in ("p50_ms", "p95_ms")},
                "p99_ms": round(max(float(r["p99_ms"]) for r in runs), 3),
                "max_ms": None,
                "source": "watchdog (worst run's percentiles)",
            }
        out[stage] = {
            **row,
            "target_ms": sla.target_ms,
            "warning_ms": sla.warning_ms,
            "critical_ms": sla.critical_ms,
            "over_target": sum(1 for x in v if x >= sla.target_ms) if v else None,
        }
    return out


def alert_counts(led: DayLedger) -> dict[str, Any]:
    by_level: dict[str, dict[str, int]] = defaultdict(lambda: {"raised": 0, "acknowledged": 0})
    for a in led.alerts:
        lv = by_level[str(a.get("level"))]
        lv["raised"] += 1
        lv["acknowledged"] += int(a.get("acked_at") is not None)
    return {
        "raised": len(led.alerts),
        "acknowledged": sum(1 for a in led.alerts if a.get("acked_at") is not None),
        "by_level": dict(sorted(by_level.items())),
        "unacknowledged": [
            {k: a.get(k) for k in ("alert_id", "level", "kind", "message", "ts")}
            for a in led.alerts
            if a.get("acked_at") is None
        ][:50],
    }


def entry_sizes(led: DayLedger, s: Settings) -> dict[str, Any]:
    """SPEC 3: the posture's entry size is the size at full conviction; how far below it
    the day's entries were (notional of the entry over capital)."""
    sizes: dict[str, list[float]] = defaultdict(list)
    for o in led.day_orders:
        if o.get("intent") != "entry" or not o.get("posture"):
            continue
        price = o.get("avg_fill_price") or o.get("limit_price")
        if not price:
            continue
        sizes[str(o["posture"])].append(float(o["qty"]) * float(price) / s.broker.capital)
    out = {}
    for posture in ("offensive", "guerrilla", "defensive"):
        full = getattr(s.posture, posture).entry_size
        v = sizes.get(posture, [])
        avg = sum(v) / len(v) if v else None
        out[posture] = {
            "entries": len(v),
            "average": round(avg, 5) if avg is not None else None,
            "full_conviction": full,
            "share_of_full": round(avg / full, 3) if avg is not None else None,
        }
    return out
