"""The Redis cache: the same `Cache` surface as `MemoryCache`, over a redis-py pool.

A cache is never the truth, so Redis being down must not stop anyone: while it is down
every read is a miss (the context loader falls back to the durable store) and every write
is dropped and counted. Reconnection is tried on the clock with exponential backoff, not
on every call. This process is the only writer of its prefix, so it keeps the last value
it set for each key: after an outage those values are written back (what Redis held may
be stale), and price histories are cleared (they would hide the gap).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from loguru import logger

from aegis_actors.cache import PRICE_HISTORY

T = TypeVar("T")
log = logger.bind(actor="cache")


def redact_url(url: str) -> str:
    """Hide a password in a redis:// URL so it can appear in a log line."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"


class RedisCache:
    """Thread-safe: redis-py's client checks a connection out of the pool per command."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "aegis:",
        now: Callable[[], float],
        history: int = PRICE_HISTORY,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        socket_timeout_s: float = 0.5,
        max_connections: int = 32,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._now = now
        self._history = history
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._on_error = on_error
        self._pool = redis.ConnectionPool.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            max_connections=max_connections,
            decode_responses=True,
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._lock = threading.Lock()  # guards the up/down state, not the commands
        self.up = True
        self._retry_at = 0.0
        self._backoff = backoff_initial_s
        self.failures = 0
        self.reconnects = 0
        self.dropped = 0
        self._shadow: dict[str, str] = {}  # last value this process set, per key

    def __repr__(self) -> str:
        return f"RedisCache({redact_url(self.url)!r}, prefix={self.prefix!r})"

    # -- keys --------------------------------------------------------------------------

    def _pkey(self, symbol: str) -> str:
        return f"{self.prefix}prices:{symbol}"

    def _kkey(self, key: str) -> str:
        return f"{self.prefix}kv:{key}"

    # -- the Cache surface ---------------------------------------------------------------

    def push_price(self, symbol: str, price: float, ts: float) -> None:
        def push() -> None:
            pipe = self._client.pipeline(transaction=False)
            pipe.rpush(self._pkey(symbol), f"{ts!r},{price!r}")
            pipe.ltrim(self._pkey(symbol), -self._history, -1)
            pipe.execute()

        self._call(push, None, write=True)

    def prices(self, symbol: str, n: int = PRICE_HISTORY) -> list[tuple[float, float]]:
        raw: list[Any] = self._call(lambda: self._client.lrange(self._pkey(symbol), -n, -1), [])
        out: list[tuple[float, float]] = []
        for item in raw:
            ts, _, price = item.partition(",")
            out.append((float(ts), float(price)))
        return out

    def price_series(self, symbol: str, n: int = PRICE_HISTORY) -> tuple[list[float], float | None]:
        """`prices` split: the prices alone and the newest one's time."""
        history = self.prices(symbol, n)
        return [p for _, p in history], (history[-1][0] if history else None)

    def get_json(self, key: str) -> Any | None:
        raw = self._call(lambda: self._client.get(self._kkey(key)), None)
        return None if raw is None else json.loads(raw)

    def get_many(self, keys: list[str]) -> list[Any | None]:
        """Several values in one round trip (MGET); all None while Redis is down."""
        raws: list[Any] = self._call(
            lambda: self._client.mget([self._kkey(k) for k in keys]), [None] * len(keys)
        )
        return [None if r is None else json.loads(r) for r in raws]

    def get_many_raw(self, keys: list[str]) -> list[str | None]:
        """`get_many` unparsed (MGET); all None while Redis is down."""
        raws: list[Any] = self._call(
            lambda: self._client.mget([self._kkey(k) for k in keys]), [None] * len(keys)
        )
        return [None if r is None else r if isinstance(r, str) else r.decode() for r in raws]

    def set_json(self, key: str, value: Any) -> None:
        raw = json.dumps(value, separators=(",", ":"), default=str)
        with self._lock:
            self._shadow[key] = raw
        self._call(lambda: self._client.set(self._kkey(key), raw), None, write=True)

    def delete(self, key: str) -> None:
        with self._lock:
            self._shadow.pop(key, None)
        self._call(lambda: self._client.delete(self._kkey(key)), None, write=True)

    # -- health ------------------------------------------------------------------------

    def clear(self) -> int:
        """Delete every key under the prefix; returns how many."""
        n = 0
        for key in self._client.scan_iter(match=self.prefix + "*", count=500):
            n += int(self._client.delete(key))
        return n

    def resync(self) -> int:
        """After an outage: Redis gets back exactly the values this process last set."""
        cleared = self.clear()
        with self._lock:
            shadow = dict(self._shadow)
        if shadow:
            self._client.mset({self._kkey(k): v for k, v in shadow.items()})
        return cleared

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "up": self.up,
            "failures": self.failures,
            "reconnects": self.reconnects,
            "dropped_writes": self.dropped,
        }

    def close(self) -> None:
        self._pool.disconnect()

    def _call(self, fn: Callable[[], T], default: T, *, write: bool = False) -> T:
        if not self.up and not self._try_reconnect():
            if write:
                self.dropped += 1
            return default
        try:
            return fn()
        except redis.RedisError as exc:
            self._went_down(exc)
            if write:
                self.dropped += 1
            return default

    def _went_down(self, exc: Exception) -> None:
        with self._lock:
            self.failures += 1
            if self._on_error is not None:
                self._on_error("cache_unavailable")
            if self.up:
                self.up = False
                self._backoff = self._backoff_initial
                log.error(
                    "redis cache down ({}): reads miss to the durable store, writes dropped",
                    exc,
                )
            else:
                self._backoff = min(self._backoff * 2, self._backoff_max)
            self._retry_at = self._now() + self._backoff

    def _try_reconnect(self) -> bool:
        """When the backoff has run out on the clock: ping, clear stale keys, mark up."""
        with self._lock:
            if self.up:
                return True
            if self._now() < self._retry_at:
                return False
            # Claim this attempt so concurrent callers keep missing instead of piling on.
            self._retry_at = self._now() + self._backoff
        try:
            self._client.ping()
            cleared = self.resync()
        except redis.RedisError as exc:
            self._went_down(exc)
            return False
        with self._lock:
            self.up = True
            self.reconnects += 1
            self._backoff = self._backoff_initial
        log.warning("redis cache back: {} keys rewritten from this process's values", cleared)
        return True


def make_cache(settings: Any, now: Callable[[], float], on_error: Callable[[str], None]) -> Any:
    """The cache the settings ask for: Redis when `store.redis_url` is set, else memory."""
    from aegis_actors.cache import MemoryCache

    cfg = settings.store
    if not cfg.redis_url:
        return MemoryCache()
    return RedisCache(
        cfg.redis_url,
        prefix=cfg.redis_prefix,
        now=now,
        backoff_initial_s=cfg.redis_backoff_initial_s,
        backoff_max_s=cfg.redis_backoff_max_s,
        on_error=on_error,
    )
