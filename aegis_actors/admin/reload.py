"""`reload`: re-read the settings and apply what can change while running.

A key is live only if every reader reads it at the time of use (some hold a section, e.g.
the pre-trade risk check holds `risk`, so a live change is an in-place assignment on the
running `Settings`, never a swap). `LIVE` lists exactly those keys, each checked against
its readers; every other key (copied into a helper at start, like the mismatch guard's
thresholds, the account watch's loss limits, the order mix window and the posture levels
cached with the posture) cannot change live: a reload touching any of them is refused
whole, naming them, and nothing is applied.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from aegis_actors.settings import Settings

# Keys every reader reads at the time of use (reader in the comment).
LIVE = frozenset(
    {
        # execution.risk.PreTradeRisk holds `risk`; execution.core reads these two at use
        "risk.max_orders_per_minute",
        "risk.daily_loss_limit_pct",
        "risk.position_warning_pct",
        "risk.entry_ttl_s",
        # posture.PostureActor reads `settings.posture` on each evaluation
        "posture.evaluate_every_s",
        "posture.vix_low",
        "posture.vix_high",
        "posture.hysteresis",
        "posture.stop_loss_streak",
        "posture.forced_cooldown_s",
        "posture.trend_symbol",
        "posture.trend_window",
        "posture.trend_strong_pct",
        "posture.vol_low_pct",
        "posture.vol_high_pct",
        # watchdog: timers and checks read `settings.watchdog` when they fire
        "watchdog.heartbeat_every_s",
        "watchdog.heartbeat_timeout_s",
        "watchdog.event_timeout_s",  # also gateway.admission, at use
        "watchdog.heartbeat_misses",
        "watchdog.account_every_s",
        "watchdog.accuracy_horizon_s",
        "watchdog.latency_log_every_s",
        "watchdog.pnl_log_every_s",
        "watchdog.success_log_every_s",
        "watchdog.anomaly_every_s",
        "watchdog.anomaly_z",
        "roles.max_consecutive_failures",  # watchdog, per failed event
        "news.keywords",  # gateway.news holds `news`
        "news.poll_every_s",
    }
)


def leaves(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Every leaf key of a settings model, dotted (secrets stay SecretStr objects)."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.update(leaves(value, key + "."))
        else:
            out[key] = value
    return out


def changed_keys(old: Settings, new: Settings) -> list[str]:
    a, b = leaves(old), leaves(new)
    return sorted(k for k in a if a[k] != b.get(k))


def is_live(key: str) -> bool:
    return key in LIVE


def apply(current: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """(applied, refused) key names; refused non-empty means nothing was applied."""
    keys = changed_keys(current, new)
    refused = [k for k in keys if not is_live(k)]
    if refused:
        return [], refused
    fresh = leaves(new)
    for key in keys:
        *path, leaf = key.split(".")
        target: Any = current
        for part in path:
            target = getattr(target, part)
        setattr(target, leaf, fresh[key])  # validate_assignment checks it again
    return keys, []
