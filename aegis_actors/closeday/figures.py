"""The day's figures beside P&L: orders, SPEC 5.3 accuracy against its targets, LLM usage
per role, latency per stage against its SLA, alerts, and entry size per posture (SPEC 3)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from aegis_actors.closeday.ledger import DayLedger, as_json
from aegis_actors.closeday.prices import PriceBook
from aegis_actors.settings import Settings
from aegis_actors.watchdog.accuracy import judge_targets, targets_of
from aegis_actors.watchdog.sla import STAGES

FAILED = ("rejected", "error")
ROLES = ("analyst", "verifier", "commander")


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))
    return round(v[k], 3)


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
