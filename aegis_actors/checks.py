"""The pre-session checklist (SPEC 7): every item a real probe of the thing it names.

`check` and `close-day`'s next-day readiness run the same list. Each item says PASS, WARN
or FAIL in one line; only a FAIL fails the list. A probe never prints a secret: a key that
is refused is named by its environment variable, never by its value.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import requests

from aegis_actors.llm.keys import FALLBACK_ENV, api_key, fallback_secrets
from aegis_actors.settings import RoleSettings, Settings

MIN_FREE_MB = 500.0  # under this a day's logs and a spool may not fit: WARN
LOW_FREE_MB = 50.0  # under this: FAIL
SKEW_WARN_S = 2.0  # the broker's Date header has a 1 s resolution
SKEW_FAIL_S = 30.0  # admin requests are refused past 30 s, and timestamps stop meaning much
TIMEOUT_S = 5.0
BROKER_KEYS = "AEGIS_BROKER__KEY_ID / AEGIS_BROKER__SECRET_KEY"
FEED_KEYS = "AEGIS_FEED__KEY / AEGIS_FEED__SECRET"


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Item:
    name: str
    status: Status
    detail: str

    def line(self, width: int = 0) -> str:
        return f"{self.status.value}  {self.name:<{width}}  {self.detail}"


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or no route"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- local: settings, disk, limits --------------------------------------------------------


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
            out.append(Item(name, Status.FAIL, f"{d}: {_one_line(exc)}"))
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


# -- stores: PostgreSQL / SQLite, Redis, admin secret -------------------------------------


def store_items(s: Settings) -> list[Item]:
    """Reachable and writable (a probe row written and deleted), and the schema version."""
    from aegis_actors.store.postgres import PostgresDatabase
    from aegis_actors.store.schema import LATEST_VERSION
    from aegis_actors.store.sqlite import SQLiteDatabase

    try:
        if s.store.postgres_dsn:
            db: Any = PostgresDatabase(
                s.store.postgres_dsn, connect_timeout=s.store.connect_timeout_s
            )
        else:
            Path(s.store.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            db = SQLiteDatabase(s.store.sqlite_path)
    except Exception as exc:
        return [Item("durable store", Status.FAIL, _one_line(exc))]
    try:
        version = db.schema_version()
        if version >= 1:
            key = f"check-probe-{uuid.uuid4().hex[:8]}"
            db.upsert("kv", {"key": key, "value": "1", "updated_at": time.time()}, ("key",))
            db.delete("kv", {"key": key})
            written = "writable"
        else:
            written = "reachable (empty: `run` creates the schema)"
        store = Item("durable store", Status.PASS, f"{db.kind} {written}")
        if version == LATEST_VERSION:
            schema = Item("schema version", Status.PASS, f"v{version} (current)")
        elif version < LATEST_VERSION:
            schema = Item(
                "schema version",
                Status.WARN,
                f"v{version}, code expects v{LATEST_VERSION}: the next start migrates it",
            )
        else:
            schema = Item(
                "schema version",
                Status.FAIL,
                f"v{version} is newer than this code's v{LATEST_VERSION}: upgrade AEGIS",
            )
        return [store, schema]
    except Exception as exc:
        return [Item("durable store", Status.FAIL, _one_line(exc))]
    finally:
        db.close()


def redis_items(s: Settings) -> list[Item]:
    """Redis set/get/delete under the configured prefix; the admin secret when it is used."""
    url = s.store.redis_url
    if not url:
        return [Item("redis", Status.PASS, "not configured (in-memory cache, no admin channel)")]
    import redis

    from aegis_actors.admin.client import redacted_url

    out: list[Item] = []
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3.0, socket_timeout=3.0)
        key = f"{s.store.redis_prefix}check-probe:{uuid.uuid4().hex[:8]}"
        client.set(key, "1", ex=60)
        ok = client.get(key) == b"1"
        client.delete(key)
        client.close()
        out.append(
            Item(
                "redis",
                Status.PASS if ok else Status.FAIL,
                f"{redacted_url(url)} "
                + ("writable" if ok else "wrote a key but read another value"),
            )
        )
    except redis.RedisError as exc:
        out.append(Item("redis", Status.FAIL, f"{redacted_url(url)}: {_one_line(exc)}"))
    secret = bool(s.admin_secret.get_secret_value())
    out.append(
        Item(
            "admin secret",
            Status.PASS if secret else Status.FAIL,
            "AEGIS_ADMIN_SECRET set"
            if secret
            else "AEGIS_ADMIN_SECRET is not set: every admin command would be refused",
        )
    )
    return out


# -- the broker: keys, account, clock -----------------------------------------------------


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
        return [Item("broker account", Status.FAIL, f"{b.url} unreachable: {_one_line(exc)}")]
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


# -- market data: connect, authenticate, disconnect --------------------------------------


def feed_items(s: Settings) -> list[Item]:
    f = s.feed
    if f.kind in ("synthetic", "replay"):
        return [Item("market data", Status.PASS, f"{f.kind} feed, no keys needed")]
    out: list[Item] = []
    for role, url in (("primary", f.url), ("backup", f.backup_url)):
        if not url:
            if role == "primary":
                out.append(Item("market data", Status.FAIL, "feed.url is not set"))
            continue
        name = "market data" if role == "primary" else "market data backup"
        out.append(
            Item(
                name,
                *feed_probe(f.kind, url, f.key.get_secret_value(), f.secret.get_secret_value()),
            )
        )
    return out


def feed_probe(kind: str, url: str, key: str, secret: str) -> tuple[Status, str]:
    import websocket

    from aegis_actors.gateway.protocols import alpaca_auth, decode_frame

    if kind == "alpaca" and not (key and secret):
        return Status.FAIL, f"{FEED_KEYS} not set"
    ws = None
    try:
        ws = websocket.create_connection(url, timeout=TIMEOUT_S)
        if kind != "alpaca":
            return Status.PASS, f"{url} connected (no authentication in this protocol)"
        ws.send(alpaca_auth(key, secret))
        for _ in range(5):
            items = decode_frame(ws.recv())
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict):
                    continue
                if item.get("T") == "error":
                    return Status.FAIL, (
                        f"{url} refused the keys (error {item.get('code')}: {item.get('msg')}): "
                        f"check {FEED_KEYS}"
                    )
                if item.get("T") == "success" and item.get("msg") == "authenticated":
                    return Status.PASS, f"{url} keys accepted"
        return Status.FAIL, f"{url} never answered the authentication"
    except Exception as exc:
        return Status.FAIL, f"{url} unreachable: {_one_line(exc)}"
    finally:
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:
                pass


# -- the LLM endpoints: the same key the roles use ---------------------------------------


def key_variables(role: str, cfg: RoleSettings) -> str:
    own = f"AEGIS_ROLES__{role.upper()}__API_KEY"
    shared = FALLBACK_ENV.get(cfg.api)
    return f"{own} or {shared}" if shared else own


def llm_items(s: Settings) -> list[Item]:
    out: list[Item] = []
    for role in ("analyst", "verifier", "commander"):
        cfg: RoleSettings = getattr(s.roles, role)
        if cfg.backend != "llm":
            out.append(Item(f"{role} backend", Status.PASS, "local rules (no API)"))
            continue
        key = api_key(cfg.api_key, cfg.api)
        for which, url in (("API", cfg.url), ("backup API", cfg.backup_url)):
            if not url:
                if which == "API":
                    out.append(Item(f"{role} API", Status.FAIL, f"roles.{role}.url is not set"))
                else:
                    out.append(Item(f"{role} backup API", Status.WARN, "no backup_url configured"))
                continue
            if not key:
                out.append(
                    Item(f"{role} {which}", Status.FAIL, f"{key_variables(role, cfg)} not set")
                )
                continue
            out.append(Item(f"{role} {which}", *llm_probe(role, cfg, url, key)))
    return out


def llm_probe(role: str, cfg: RoleSettings, url: str, key: str) -> tuple[Status, str]:
    """A minimal request with the configured key, through the client the roles use."""
    from aegis_actors.llm.client import Endpoint, make_client
    from aegis_actors.llm.errors import LlmError

    client = make_client(Endpoint(url=url, api=cfg.api, model=cfg.model, key=key), max_tokens=16)
    try:
        reply = client.complete(
            'Answer with the JSON object {"ok": true}.',
            [{"role": "user", "content": "ping"}],
            timeout_s=max(cfg.timeout_s, TIMEOUT_S),
        )
    except LlmError as exc:
        if exc.status in (401, 403):
            return Status.FAIL, (
                f"{cfg.model} at {url} refused the key ({exc.status}): check "
                f"{key_variables(role, cfg)}"
            )
        return Status.FAIL, f"{cfg.model} at {url}: {exc.kind} {exc.status or ''}".rstrip()
    finally:
        client.close()
    return (
        Status.PASS,
        f"{reply.model or cfg.model} at {url} answered in {reply.latency_s * 1000:.0f} ms",
    )


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
    """Masks every configured secret and any user:password in a URL (belt and braces: no
    item names a secret's value, but an error text from a driver might carry one)."""
    values = [
        v.get_secret_value()
        for v in (
            s.admin_secret,
            s.feed.key,
            s.feed.secret,
            s.broker.key_id,
            s.broker.secret_key,
            s.roles.analyst.api_key,
            s.roles.verifier.api_key,
            s.roles.commander.api_key,
        )
    ] + fallback_secrets()
    values = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for v in values:
            text = text.replace(v, "***")
        return _USERINFO.sub("://***@", text)

    return scrub


def run_checks(s: Settings) -> list[Item]:
    items = [
        Item("settings", Status.PASS, f"valid ({s.source_file or 'defaults and environment'})")
    ]
    for probe in PROBES:
        try:
            items.extend(probe(s))
        except Exception as exc:  # a probe's own bug is a failed item, not a traceback
            items.append(Item(getattr(probe, "__name__", "probe"), Status.FAIL, _one_line(exc)))
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
