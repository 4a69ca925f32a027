"""A cache of LLM answers for backtests: a rerun costs nothing and is identical.

On disk (SQLite) by default; in PostgreSQL or Redis when given a URL, so the workers of one
optimize study, on any number of machines, never pay twice for the same prompt.

Keyed by role, model, prompt version and the hash of the exact prompt (system text and
messages), so a changed template, model or market context is a miss. The cache wraps each
role's endpoint clients; the roles, their worker pool and their validation run unchanged.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg2
import redis
from loguru import logger

from aegis_actors.llm.client import Messages, Reply
from aegis_actors.llm.cost import Usage
from aegis_actors.roles.backends import LlmBackend, make_backend
from aegis_actors.settings import Settings

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, role TEXT, model TEXT, "
    "prompt_version TEXT, text TEXT, input_tokens INTEGER, output_tokens INTEGER)"
)
CLAIMS = "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, until DOUBLE PRECISION)"
PG_TABLE = "aegis_llm_replies"  # and aegis_llm_claims, in the DSN's database
REDIS_PREFIX = "aegis:llm:"
POLL_S = 0.05
STORE_ERRORS = (sqlite3.Error, psycopg2.Error, redis.RedisError, OSError)
log = logger.bind(actor="backtest")


@dataclass
class RoleUsage:
    calls: int = 0  # HTTP calls made (cache misses)
    hits: int = 0
    input_tokens: int = 0  # of the calls made
    output_tokens: int = 0
    price_in: float = 0.0
    price_out: float = 0.0

    @property
    def cost_usd(self) -> float:
        return self.input_tokens / 1000 * self.price_in + self.output_tokens / 1000 * self.price_out


Row = tuple[str, str, str, str, int, int]  # role, model, version, text, tokens in, out


class Store(Protocol):
    """Where answers live. `claim`: this caller is the one to ask the LLM for `key` (no
    answer yet and nobody else asking); a claim lapses after `ttl_s` (its caller killed)."""

    def get(self, key: str) -> tuple[str, Usage] | None: ...
    def claim(self, key: str, ttl_s: float) -> bool: ...
    def release(self, key: str) -> None: ...
    def put(self, key: str, row: Row) -> None: ...
    def close(self) -> None: ...


class SqliteStore:
    """A file: one machine's runs and local workers (SQLite serialises their writes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
        self._con.execute(SCHEMA)
        self._con.execute(CLAIMS)
        self._lock = threading.Lock()  # worker threads of the three roles share it

    def get(self, key: str) -> tuple[str, Usage] | None:
        with self._lock:
            row = self._con.execute(
                "SELECT text, input_tokens, output_tokens FROM replies WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else (row[0], Usage(int(row[1]), int(row[2])))

    def claim(self, key: str, ttl_s: float) -> bool:
        now = time.time()
        with self._lock:
            self._con.execute("DELETE FROM claims WHERE key = ? AND until < ?", (key, now))
            cur = self._con.execute(
                "INSERT OR IGNORE INTO claims VALUES (?, ?)", (key, now + ttl_s)
            )
            return cur.rowcount == 1

    def release(self, key: str) -> None:
        with self._lock:
            self._con.execute("DELETE FROM claims WHERE key = ?", (key,))

    def put(self, key: str, row: Row) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?)", (key, *row)
            )
            self._con.execute("DELETE FROM claims WHERE key = ?", (key,))

    def close(self) -> None:
        with self._lock:
            self._con.close()


class PostgresStore:
    """A PostgreSQL database (optimize's `--storage`): every machine of a study shares it."""

    def __init__(self, dsn: str) -> None:
        import psycopg2

        self._con = psycopg2.connect(dsn)
        self._con.autocommit = True
        self._lock = threading.Lock()
        with self._lock, self._con.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))  # CREATE TABLE races
            try:
                cur.execute(SCHEMA.replace("replies", PG_TABLE))
                cur.execute(CLAIMS.replace("claims", PG_TABLE.replace("replies", "claims")))
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

    def _do(self, sql: str, args: tuple[Any, ...]) -> Any:
        sql = sql.replace("replies", PG_TABLE).replace("claims", "aegis_llm_claims")
        with self._lock, self._con.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone() if cur.description else cur.rowcount

    def get(self, key: str) -> tuple[str, Usage] | None:
        row = self._do(
            "SELECT text, input_tokens, output_tokens FROM replies WHERE key = %s", (key,)
        )
        return None if row is None else (row[0], Usage(int(row[1]), int(row[2])))

    def claim(self, key: str, ttl_s: float) -> bool:
        now = time.time()
        row = self._do(
            "INSERT INTO claims VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET until = "
            "EXCLUDED.until WHERE claims.until < %s RETURNING key",
            (key, now + ttl_s, now),
        )
        return row is not None

    def release(self, key: str) -> None:
        self._do("DELETE FROM claims WHERE key = %s", (key,))

    def put(self, key: str, row: Row) -> None:
        self._do(
            "INSERT INTO replies VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
            (key, *row),
        )
        self.release(key)

    def close(self) -> None:
        with self._lock:
            self._con.close()


class RedisStore:
    """Redis (optimize's `--cache redis://...`): a hash per answer, SET NX EX claims. Keys
    under `aegis:llm:`, or the URL's `?prefix=` (stripped before connecting)."""

    def __init__(self, url: str) -> None:
        import redis

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.prefix = query.pop("prefix", REDIS_PREFIX)
        plain = urlunsplit(parts._replace(query=urlencode(query)))
        self._r = redis.Redis.from_url(plain, socket_timeout=10, decode_responses=True)

    def get(self, key: str) -> tuple[str, Usage] | None:
        row = self._r.hmget(self.prefix + key, "text", "input_tokens", "output_tokens")
        if row[0] is None:
            return None
        text, tokens_in, tokens_out = (str(v) for v in row)
        return text, Usage(int(tokens_in), int(tokens_out))

    def claim(self, key: str, ttl_s: float) -> bool:
        return bool(self._r.set(f"{self.prefix}claim:{key}", "1", nx=True, px=int(ttl_s * 1000)))

    def release(self, key: str) -> None:
        self._r.delete(f"{self.prefix}claim:{key}")

    def put(self, key: str, row: Row) -> None:
        role, model, version, text, tokens_in, tokens_out = row
        fields: dict[str | bytes, str | int] = {
            "role": role,
            "model": model,
            "prompt_version": version,
            "text": text,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
        }
        self._r.hset(self.prefix + key, mapping=fields)  # type: ignore[arg-type]
        self.release(key)

    def close(self) -> None:
        self._r.close()


SCHEMA_LOCK = 0x4AE616  # the advisory lock key for creating the PostgreSQL tables


def is_postgres(where: str) -> bool:
    return where.startswith(("postgresql://", "postgres://")) or (
        "://" not in where and ("dbname=" in where or "host=" in where)
    )


def open_store(where: str | Path) -> tuple[Store, str]:
    """(the store, a label without any password) for a file path, redis:// or postgresql://
    URL (or a key=value PostgreSQL DSN)."""
    text = str(where)
    if text.startswith(("redis://", "rediss://", "unix://")):
        from aegis_actors.cache_redis import redact_url

        return RedisStore(text), redact_url(text)
    if is_postgres(text):
        import psycopg2.extensions

        try:
            parts = psycopg2.extensions.parse_dsn(text)
            label = f"postgresql {parts.get('host', 'localhost')}/{parts.get('dbname', '')}"
        except psycopg2.ProgrammingError:
            label = "postgresql"
        return PostgresStore(text), label
    return SqliteStore(Path(text)), text


@dataclass
class ResponseCache:
    """The answers (in a Store) and this run's usage. Workers on several machines sharing
    a PostgreSQL or Redis store ask the LLM once per prompt: the first to miss claims the
    key, the others wait for its answer (or ask themselves once its claim lapses)."""

    where: str | Path
    usage: dict[str, RoleUsage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store, self.label = open_store(self.where)
        self._lock = threading.Lock()
        self.down = False

    @staticmethod
    def key(role: str, model: str, version: str, system: str, messages: Messages) -> str:
        prompt = json.dumps([system, messages], sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        return hashlib.sha256(f"{role}\0{model}\0{version}\0{digest}".encode()).hexdigest()

    def get_or_claim(self, key: str, ttl_s: float) -> tuple[str, Usage] | None:
        """The answer, or None once this caller holds the claim to ask for it."""
        deadline = time.monotonic() + ttl_s
        while not self.down:
            try:
                hit = self.store.get(key)
                if hit is not None:
                    return hit
                if self.store.claim(key, ttl_s):
                    return None
            except STORE_ERRORS as exc:
                self._lost(exc)
                return None
            if time.monotonic() > deadline:
                return None
            time.sleep(POLL_S)  # another worker is asking the LLM this very prompt
        return None

    def put(self, key: str, role: str, model: str, version: str, reply: Reply) -> None:
        usage = reply.usage
        row = (role, model, version, reply.text, usage.input_tokens, usage.output_tokens)
        self._safely(lambda: self.store.put(key, row))

    def release(self, key: str) -> None:
        self._safely(lambda: self.store.release(key))

    def _safely(self, op: Callable[[], None]) -> None:
        if self.down:
            return
        try:
            op()
        except STORE_ERRORS as exc:
            self._lost(exc)

    def _lost(self, exc: Exception) -> None:
        """A cache is never the truth: with its store unreachable, every call goes to the
        LLM (paid, counted) rather than the run failing or its roles erring."""
        self.down = True
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning(f"LLM cache {self.label} unusable ({first}): asking the LLM without it")

    def count(self, role: str, *, hit: bool, usage: Usage) -> None:
        with self._lock:
            u = self.usage[role]
            if hit:
                u.hits += 1
            else:
                u.calls += 1
                u.input_tokens += usage.input_tokens
                u.output_tokens += usage.output_tokens

    def report(self) -> dict[str, Any]:
        roles = {
            role: {
                "calls": u.calls,
                "cache_hits": u.hits,
                "tokens": u.input_tokens + u.output_tokens,
                "cost_usd": round(u.cost_usd, 6),
            }
            for role, u in sorted(self.usage.items())
        }
        return {
            "calls": sum(r["calls"] for r in roles.values()),
            "cache_hits": sum(r["cache_hits"] for r in roles.values()),
            "tokens": sum(r["tokens"] for r in roles.values()),
            "cost_usd": round(sum(r["cost_usd"] for r in roles.values()), 6),
            "roles": roles,
            "cache": self.label,
        }

    def close(self) -> None:
        self.store.close()


CLAIM_MIN_S = 5.0


class CachingClient:
    """A ChatClient in front of another: answers from the cache, else calls and stores."""

    def __init__(self, inner: Any, cache: ResponseCache, role: str, version: str) -> None:
        self.inner = inner
        self.cache = cache
        self.role = role
        self.version = version
        self.model = inner.endpoint.model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def complete(self, system: str, messages: Messages, *, timeout_s: float) -> Reply:
        key = self.cache.key(self.role, self.model, self.version, system, messages)
        hit = self.cache.get_or_claim(key, CLAIM_MIN_S + 2 * timeout_s)
        if hit is not None:
            text, usage = hit
            self.cache.count(self.role, hit=True, usage=usage)
            return Reply(text, usage, self.model, "cache", 0.0)
        try:
            reply: Reply = self.inner.complete(system, messages, timeout_s=timeout_s)
        except BaseException:
            self.cache.release(key)  # let another worker (or a retry) ask
            raise
        self.cache.put(key, self.role, self.model, self.version, reply)
        self.cache.count(self.role, hit=False, usage=reply.usage)
        return reply


def cached_llm_backends(
    settings: Settings, cache: ResponseCache, skip: set[str]
) -> dict[str, LlmBackend]:
    """The llm-backed roles (not in `skip`) with their clients behind the cache."""
    out: dict[str, LlmBackend] = {}
    for role in ("analyst", "verifier", "commander"):
        cfg = getattr(settings.roles, role)
        if role in skip or cfg.backend != "llm":
            continue
        backend = make_backend(role, cfg)
        assert isinstance(backend, LlmBackend)
        version = backend.prompt_version
        pool = backend.pool
        pool.primary = CachingClient(pool.primary, cache, role, version)  # type: ignore[assignment]
        if pool.backup is not None:
            pool.backup = CachingClient(pool.backup, cache, role, version)  # type: ignore[assignment]
        cache.usage[role] = RoleUsage(price_in=cfg.price_in_per_1k, price_out=cfg.price_out_per_1k)
        out[role] = backend
    return out
