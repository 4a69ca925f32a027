"""The few lines a run ends with: how it went, without adding up log lines.

Counts come from the run's metrics (they outlive the actors); money, positions, mode and
posture from what execution and the cache said just before the tree stopped.
"""

from __future__ import annotations

from typing import Any

from aegis_actors.metrics import Metrics


def by_label(metrics: Metrics, family: str, label: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for metric in metrics.registry.collect():
        for s in metric.samples:
            if s.name == f"{family}_total" and s.value:
                key = s.labels.get(label, "?")
                out[key] = out.get(key, 0) + int(s.value)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _parts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def summary_lines(
    metrics: Metrics,
    duration_s: float,
    execution: dict[str, Any],
    mode: Any,
    posture: Any,
) -> list[str]:
    events = by_label(metrics, "aegis_events", "outcome")
    orders = by_label(metrics, "aegis_orders", "status")
    refused = by_label(metrics, "aegis_orders_refused", "check")
    alerts = by_label(metrics, "aegis_alerts", "level")
    fills = int(metrics.value("aegis_fills_total"))
    positions = execution.get("positions") or {}
    realised = execution.get("realised")
    equity = execution.get("equity")
    held = ", ".join(
        f"{sym} {float(p.get('qty', 0)):g} @ {float(p.get('avg_price', 0)):.2f}"
        for sym, p in positions.items()
    )
    n_events, n_orders, n_alerts = sum(events.values()), sum(orders.values()), sum(alerts.values())
    return [
        f"run summary: {duration_s:.1f} s, {n_events} events"
        + (f" ({_parts(events)})" if events else ""),
        f"run summary: {n_orders} orders"
        + (f" ({_parts(orders)})" if orders else "")
        + (f", {sum(refused.values())} refused by checks ({_parts(refused)})" if refused else "")
        + f", {fills} fills, realised P&L "
        + (f"{realised:,.2f}" if isinstance(realised, int | float) else "unknown")
        + (f", equity {equity:,.2f}" if isinstance(equity, int | float) else ""),
        f"run summary: {len(positions)} open positions"
        + (f" ({held})" if held else "")
        + f"; {n_alerts} alerts"
        + (f" ({_parts(alerts)})" if alerts else "")
        + f"; at exit mode {mode or '?'}, posture {posture or '?'}",
    ]
