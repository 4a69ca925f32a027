"""Local items: the log and spool directories (writable, free space), the daily limits."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from aegis_actors.checks.item import Item, Status, one_line
from aegis_actors.settings import Settings

MIN_FREE_MB = 500.0  # under this a day's logs and a spool may not fit: WARN
LOW_FREE_MB = 50.0  # under this: FAIL


def disk_items(s: Settings) -> list[Item]:
    """The log directory and the spool's directory exist, are writable and have room."""
    out: list[Item] = []
    places = {
        "log directory": Path(s.run.log_dir),
        "spool directory": Path(s.store.spool_path).parent,
    }
    for name, d in places.items():
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".write-test-{uuid.uuid4().hex[:6]}"
            probe.write_text("ok")
            probe.unlink()
            free_mb = shutil.disk_usage(d).free / 1e6
        except OSError as exc:
            out.append(Item(name, Status.FAIL, f"{d}: {one_line(exc)}"))
            continue
        status = (
            Status.FAIL
            if free_mb < LOW_FREE_MB
            else Status.WARN
            if free_mb < MIN_FREE_MB
            else Status.PASS
        )
        out.append(Item(name, status, f"{d} writable, {free_mb:,.0f} MB free"))
    return out


def limits_item(s: Settings) -> Item:
    r = s.risk
    ok = r.daily_loss_limit_pct > 0 and r.minute_loss_limit_pct > 0 and r.max_orders_per_minute > 0
    detail = (
        f"daily loss {r.daily_loss_limit_pct}%, minute loss {r.minute_loss_limit_pct}%, "
        f"{r.max_orders_per_minute} orders/min"
    )
    budgets = [
        f"{role} ${getattr(s.roles, role).daily_budget_usd:g}"
        for role in ("analyst", "verifier", "commander")
        if getattr(s.roles, role).backend == "llm"
    ]
    if budgets:
        detail += ", LLM budget " + ", ".join(budgets)
    unlimited = [
        role
        for role in ("analyst", "verifier", "commander")
        if getattr(s.roles, role).backend == "llm"
        and getattr(s.roles, role).daily_budget_usd == 0
        and getattr(s.roles, role).daily_budget_tokens == 0
    ]
    if not ok:
        return Item("daily limits", Status.FAIL, detail)
    if unlimited:
        return Item(
            "daily limits",
            Status.WARN,
            f"{detail}; no daily LLM budget for {', '.join(unlimited)} (0 = unlimited)",
        )
    return Item("daily limits", Status.PASS, detail)
