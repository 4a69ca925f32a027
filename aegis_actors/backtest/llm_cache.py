"""An on-disk cache of LLM answers for backtests: a rerun costs nothing and is identical.

Keyed by role, model, prompt version and the hash of the exact prompt (system text and
messages), so a changed template, model or market context is a miss. The cache wraps each
role's endpoint clients; the roles, their worker pool and their validation run unchanged.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aegis_actors.llm.client import Messages, Reply
from aegis_actors.llm.cost import Usage
from aegis_actors.roles.backends import LlmBackend, make_backend
from aegis_actors.settings import Settings

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, role TEXT, model TEXT, "
    "prompt_version TEXT, text TEXT, input_tokens INTEGER, output_tokens INTEGER)"
)


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


@dataclass
class ResponseCache:
    path: Path
    usage: dict[str, RoleUsage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute(SCHEMA)
        self._lock = threading.Lock()  # worker threads of the three roles share it

    @staticmethod
    def key(role: str, model: str, version: str, system: str, messages: Messages) -> str:
        prompt = json.dumps([system, messages], sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        return hashlib.sha256(f"{role}\0{model}\0{version}\0{digest}".encode()).hexdigest()

    def get(self, key: str) -> tuple[str, Usage] | None:
        with self._lock:
            row = self._con.execute(
                "SELECT text, input_tokens, output_tokens FROM replies WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else (row[0], Usage(int(row[1]), int(row[2])))

    def put(self, key: str, role: str, model: str, version: str, reply: Reply) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    role,
                    model,
                    version,
                    reply.text,
                    reply.usage.input_tokens,
                    reply.usage.output_tokens,
                ),
            )

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
            "cache": str(self.path),
        }

    def close(self) -> None:
        with self._lock:
            self._con.close()


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
        hit = self.cache.get(key)
        if hit is not None:
            text, usage = hit
            self.cache.count(self.role, hit=True, usage=usage)
            return Reply(text, usage, self.model, "cache", 0.0)
        reply: Reply = self.inner.complete(system, messages, timeout_s=timeout_s)
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
