"""The durable store (written, schema version), Redis (written) and the admin secret."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from aegis_actors.checks.item import Item, Status, one_line
from aegis_actors.settings import Settings


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
        return [Item("durable store", Status.FAIL, one_line(exc))]
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
        return [Item("durable store", Status.FAIL, one_line(exc))]
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
        out.append(Item("redis", Status.FAIL, f"{redacted_url(url)}: {one_line(exc)}"))
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
