"""The pre-session checklist (SPEC 7): every item a real probe of the thing it names.

`check` and `close-day`'s next-day readiness run the same list. Each item says PASS, WARN
or FAIL in one line; only a FAIL fails the list. A probe never prints a secret: a key that
is refused is named by its environment variable, never by its value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict

from aegis_actors.checks.broker import broker_items, clock_item
from aegis_actors.checks.feed import feed_items
from aegis_actors.checks.item import Item, Status, one_line
from aegis_actors.checks.llm import llm_items
from aegis_actors.checks.local import disk_items, limits_item
from aegis_actors.checks.stores import redis_items, store_items
from aegis_actors.redact import redact_text
from aegis_actors.settings import Settings

__all__ = ["Item", "Status", "as_json", "clock_item", "passed", "render", "run_checks"]

# -- the list -----------------------------------------------------------------------------

PROBES: tuple[Callable[[Settings], list[Item]], ...] = (
    disk_items,
    store_items,
    redis_items,
    broker_items,
    feed_items,
    llm_items,
    lambda s: [limits_item(s)],
)


_USERINFO = re.compile(r"://[^/@\s]+@")


def scrubber(s: Settings) -> Callable[[str], str]:
    """Masks every secret the settings know and any user:password in a URL (belt and
    braces: no item names a secret's value, but a driver's error text might carry one)."""
    values = sorted({v for v in s.secret_values() if len(v) >= 4}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for v in values:
            text = text.replace(v, "***")
        return _USERINFO.sub("://***@", redact_text(text))

    return scrub


def run_checks(s: Settings) -> list[Item]:
    items = [
        Item("settings", Status.PASS, f"valid ({s.source_file or 'defaults and environment'})")
    ]
    for probe in PROBES:
        try:
            items.extend(probe(s))
        except Exception as exc:  # a probe's own bug is a failed item, not a traceback
            items.append(Item(getattr(probe, "__name__", "probe"), Status.FAIL, one_line(exc)))
    scrub = scrubber(s)
    return [Item(i.name, i.status, scrub(i.detail)) for i in items]


def passed(items: list[Item]) -> bool:
    return all(i.status is not Status.FAIL for i in items)


def render(items: list[Item]) -> str:
    width = max((len(i.name) for i in items), default=0)
    return "\n".join(i.line(width) for i in items)


def as_json(items: list[Item]) -> str:
    return json.dumps(
        {"ok": passed(items), "items": [{**asdict(i), "status": i.status.value} for i in items]},
        indent=2,
    )
