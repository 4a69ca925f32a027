"""`reload`: re-read the settings and apply what can change while running.

Actors read their settings objects at the time of use (and some hold a section, e.g.
the pre-trade risk check holds `risk`), so a live change is an in-place assignment on
the running `Settings`, never a swap. Keys read only at start (feed, broker, store,
backends, channels, secrets, ...) cannot change live: a reload touching any of them is
refused whole, naming them, and nothing is applied.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from aegis_actors.settings import Settings

# Dotted prefixes of keys that actors read at the time of use.
LIVE = ("risk.", "posture.", "watchdog.", "news.keywords", "news.poll_every_s")
NOT_LIVE = ("posture.mode",)  # the starting posture; use the `posture` command


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
    if any(key == k or key.startswith(k + ".") for k in NOT_LIVE):
        return False
    return any(key == p or key.startswith(p) for p in LIVE)


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
