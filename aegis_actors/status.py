"""The whole system's status, gathered by asking each actor (used by admin and dashboard)."""

from __future__ import annotations

from typing import Any

from aegis_actors.messages import GetStatus
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


def collect_status(rt: Runtime, timeout: float = 2.0) -> dict[str, Any]:
    out: dict[str, Any] = {"run_id": rt.run_id, "ts": rt.clock.now()}
    for key, name in PARTS.items():
        try:
            out[key] = rt.directory.ask(name, GetStatus(), timeout)
        except Exception as exc:  # a restarting or hung actor: say so, don't fail the page
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
    w, e, p = out.get("watchdog", {}), out.get("execution", {}), out.get("posture", {})
    out["summary"] = {
        "mode": w.get("mode"),
        "posture": p.get("posture"),
        "equity": e.get("equity"),
        "pnl": e.get("pnl"),
        "positions": len(e.get("positions", {}) or {}),
        "open_orders": len(e.get("open_orders", []) or []),
        "feed_ticks": out.get("feed", {}).get("ticks"),
        "admin": "running"
        if rt.directory.get(ADMIN) is not None
        else "absent (no Redis configured)",
    }
    return out
