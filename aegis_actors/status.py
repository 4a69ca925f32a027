"""The whole system's status, gathered by asking each actor (used by admin and dashboard).

The asks go out together and are awaited together, so gathering costs the slowest
actor's answer, not the sum of eleven (the admin keeps the result as its snapshot).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil
import pykka

from aegis_actors.messages import GetStatus, expect
from aegis_actors.runtime import (
    ADMIN,
    ANALYST,
    CALENDAR,
    COMMANDER,
    CONTEXT,
    EXECUTION,
    MARKET,
    NEWS,
    POSTURE,
    STORE,
    VERIFIER,
    WATCHDOG,
    Runtime,
)

PARTS = {
    "watchdog": WATCHDOG,
    "posture": POSTURE,
    "execution": EXECUTION,
    "feed": MARKET,
    "calendar": CALENDAR,
    "news": NEWS,
    "context": CONTEXT,
    "analyst": ANALYST,
    "verifier": VERIFIER,
    "commander": COMMANDER,
    "store": STORE,
}


_net_lock = threading.Lock()
_net_last: list[float] = []  # [t, bytes_sent, bytes_recv]
# cpu_percent measures since the previous call on the same object: a fresh Process() per
# call always reads 0.0, so one object lives as long as the process (primed at import).
_PROC = psutil.Process()
_PROC.cpu_percent(interval=None)
psutil.cpu_percent(interval=None)


def system_health() -> dict[str, Any]:
    """CPU, memory and network of the host and this process (SPEC 6.1), never blocking."""
    proc = _PROC
    vm = psutil.virtual_memory()
    net = psutil.net_io_counters()
    now = time.monotonic()
    with _net_lock:  # both measure since the previous call: one caller at a time
        cpu, proc_cpu = psutil.cpu_percent(interval=None), proc.cpu_percent(interval=None)
        last = list(_net_last)
        _net_last[:] = [now, float(net.bytes_sent), float(net.bytes_recv)]
    dt = now - last[0] if last else 0.0
    return {
        "cpu_pct": cpu,
        "process_cpu_pct": proc_cpu,  # % of one core (up to 100 x cores)
        "cpus": psutil.cpu_count() or 1,
        "memory_pct": vm.percent,
        "process_rss_mb": round(proc.memory_info().rss / 1e6, 1),
        "net_sent_bytes": net.bytes_sent,
        "net_recv_bytes": net.bytes_recv,
        "net_sent_bps": round((net.bytes_sent - last[1]) / dt, 1) if dt > 0 else None,
        "net_recv_bps": round((net.bytes_recv - last[2]) / dt, 1) if dt > 0 else None,
        "threads": proc.num_threads(),
    }


def position_pnl(rt: Runtime, positions: dict[str, Any]) -> dict[str, Any]:
    """Each position marked at the last cached price, with the total."""
    rows: dict[str, Any] = {}
    total = 0.0
    for sym, p in positions.items():
        last = rt.cache.prices(sym, 1)
        price = last[-1][1] if last else None
        qty, avg = float(p.get("qty", 0)), float(p.get("avg_price", 0))
        pnl = (price - avg) * qty if price is not None else None
        pct = (price / avg - 1) * 100 * (1 if qty > 0 else -1) if price and avg else None
        total += pnl or 0.0
        rows[sym] = {**p, "price": price, "pnl": pnl, "pnl_pct": pct}
    return {"positions": rows, "unrealised": round(total, 2)}


def ask_all(rt: Runtime, timeout: float) -> dict[str, Any]:
    """Every part's status, asked at once; a part that is down or late says so."""
    pending: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for key, name in PARTS.items():
        ref = rt.directory.get(name)
        if ref is None:
            out[key] = {"error": f"LookupError: no live child named {name!r}"}
            continue
        try:
            pending[key] = ref.ask(GetStatus(), block=False)
        except pykka.ActorDeadError as exc:
            out[key] = {"error": f"ActorDeadError: {exc}"}
    deadline = time.monotonic() + timeout
    for key, future in pending.items():
        try:
            answer = future.get(timeout=max(0.0, deadline - time.monotonic()))
            out[key] = expect(answer, dict, PARTS[key], GetStatus())
        except Exception as exc:  # a restarting or hung actor: say so, don't fail the page
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return {key: out[key] for key in PARTS}


def collect_status(rt: Runtime, timeout: float = 2.0) -> dict[str, Any]:
    out: dict[str, Any] = {"run_id": rt.run_id, "ts": rt.clock.now()}
    out.update(ask_all(rt, timeout))
    w, e, p = out.get("watchdog", {}), out.get("execution", {}), out.get("posture", {})
    out["health"] = system_health()
    out["pnl"] = position_pnl(rt, e.get("positions", {}) or {})
    try:
        out["tree"] = rt.tree() if rt.tree else {}
    except Exception as exc:
        out["tree"] = {"error": f"{type(exc).__name__}: {exc}"}
    out["summary"] = {
        "mode": w.get("mode"),
        "posture": p.get("posture"),
        "equity": e.get("equity"),
        "pnl": e.get("pnl"),
        "positions": len(e.get("positions", {}) or {}),
        "open_orders": len(e.get("open_orders", []) or []),
        "feed_ticks": out.get("feed", {}).get("ticks"),
        "order_success": (w.get("accuracy") or {}).get("execution_success"),
        "below_target": [
            t["label"]
            for t in (w.get("accuracy") or {}).get("targets", []) or []
            if t.get("status") == "below"
        ],
        "alerts_open": len(w.get("escalating", []) or []),
        "admin": "running"
        if rt.directory.get(ADMIN) is not None
        else "absent (no Redis configured)",
    }
    return out


# What the default admin `status` keeps of each part beyond its plain figures (numbers,
# text, flags): what an operator checks at a glance. `status {"full": true}` (admin
# `status --full`) answers with everything, the settings and the tree included.
BRIEF_NESTED: dict[str, frozenset[str]] = {
    "watchdog": frozenset(
        {"latency", "sla", "sla_breaches", "outcomes", "alerts", "escalating", "hung"}
    ),
    "execution": frozenset({"positions", "open_orders", "unknown_orders", "awaiting_verifier"}),
    "feed": frozenset({"shed"}),
}
BRIEF_TOP = ("run_id", "ts", "snapshot_ts", "summary", "pnl")


def brief(full: dict[str, Any]) -> dict[str, Any]:
    """The default `status`: the summary, positions marked to market, the stage latencies
    against their SLA, and each part's plain figures (a part that did not answer keeps
    its error). Lists and tables past those (the settings, the tree, recent events,
    histograms of confidence, delivery counts) are in the full status only."""
    out: dict[str, Any] = {k: full[k] for k in BRIEF_TOP if k in full}
    for part in PARTS:
        doc = full.get(part)
        if not isinstance(doc, dict):
            continue
        keep = BRIEF_NESTED.get(part, frozenset())
        out[part] = {k: v for k, v in doc.items() if k in keep or not isinstance(v, dict | list)}
    out["full"] = False
    return out
