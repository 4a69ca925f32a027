"""The broker: keys valid and account readable (a real request), clock skew against it."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import requests

from aegis_actors.checks.item import TIMEOUT_S, Item, Status, one_line
from aegis_actors.settings import Settings

SKEW_WARN_S = 2.0  # the broker's Date header has a 1 s resolution
SKEW_FAIL_S = 30.0  # admin requests are refused past 30 s, and timestamps stop meaning much
BROKER_KEYS = "AEGIS_BROKER__KEY_ID / AEGIS_BROKER__SECRET_KEY"


def broker_items(s: Settings) -> list[Item]:
    b = s.broker
    if b.kind == "paper":
        return [
            Item("broker account", Status.PASS, f"paper, capital {b.capital:,.2f}"),
            Item("clock skew", Status.PASS, "paper broker runs on this machine's clock"),
        ]
    key_id, secret = b.key_id.get_secret_value(), b.secret_key.get_secret_value()
    if not (key_id and secret):
        missing = [
            n
            for n, v in (
                ("AEGIS_BROKER__KEY_ID", key_id),
                ("AEGIS_BROKER__SECRET_KEY", secret),
            )
            if not v
        ]
        return [Item("broker account", Status.FAIL, f"{' and '.join(missing)} not set")]
    if not b.url:
        return [Item("broker account", Status.FAIL, "broker.url is not set")]
    url = b.url.rstrip("/") + "/v2/account"
    headers = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret}
    try:
        t0 = time.time()
        r = requests.get(url, headers=headers, timeout=max(b.timeout_s, TIMEOUT_S))
        t1 = time.time()
    except requests.RequestException as exc:
        return [Item("broker account", Status.FAIL, f"{b.url} unreachable: {one_line(exc)}")]
    if r.status_code in (401, 403):
        return [
            Item(
                "broker account",
                Status.FAIL,
                f"{b.url} refused the keys ({r.status_code}): check {BROKER_KEYS}",
            )
        ]
    if r.status_code != 200:
        return [Item("broker account", Status.FAIL, f"{b.url} answered {r.status_code}")]
    try:
        acct = r.json()
        equity = float(acct.get("equity"))
    except (ValueError, TypeError, AttributeError):
        return [Item("broker account", Status.FAIL, f"{b.url}: account unreadable")]
    items = [Item("broker account", Status.PASS, f"{b.url} keys valid, equity {equity:,.2f}")]
    items.append(clock_item(r.headers.get("Date"), (t0 + t1) / 2))
    return items


def clock_item(date_header: str | None, local: float) -> Item:
    """This machine's clock against the broker's (its HTTP Date header)."""
    if not date_header:
        return Item("clock skew", Status.WARN, "the broker sent no Date header to compare with")
    try:
        theirs = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return Item("clock skew", Status.WARN, f"unreadable broker Date header {date_header!r}")
    skew = local - theirs
    status = (
        Status.FAIL
        if abs(skew) > SKEW_FAIL_S
        else Status.WARN
        if abs(skew) > SKEW_WARN_S
        else Status.PASS
    )
    return Item("clock skew", status, f"{skew:+.1f} s against the broker's clock")
