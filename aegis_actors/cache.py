"""The real-time cache the context loader reads first (memory here, Redis in production).

Values are JSON text so the Redis backend is a drop-in; price history is a bounded list
of (ts, price) per symbol, newest last.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Protocol

from pydantic_core import from_json, to_json  # the JSON of pydantic-core: ~5x json's speed

PRICE_HISTORY = 120


class Cache(Protocol):
    kind: str

    def push_price(self, symbol: str, price: float, ts: float) -> None: ...

    def prices(self, symbol: str, n: int = PRICE_HISTORY) -> list[tuple[float, float]]: ...

    def get_json(self, key: str) -> Any | None: ...

    def get_many(self, keys: list[str]) -> list[Any | None]: ...

    def get_many_raw(self, keys: list[str]) -> list[str | None]: ...

    def set_json(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryCache:
    """A thread-safe in-process cache; writers and readers share one instance."""

    kind = "memory"

    def __init__(self, history: int = PRICE_HISTORY) -> None:
        self._lock = threading.Lock()
        self._history = history
        self._prices: dict[str, deque[tuple[float, float]]] = {}
        self._kv: dict[str, str] = {}

    def push_price(self, symbol: str, price: float, ts: float) -> None:
        with self._lock:
            q = self._prices.get(symbol)
            if q is None:
                q = self._prices[symbol] = deque(maxlen=self._history)
            q.append((float(ts), float(price)))  # floats, as Redis gives them back

    def prices(self, symbol: str, n: int = PRICE_HISTORY) -> list[tuple[float, float]]:
        with self._lock:
            q = self._prices.get(symbol)
            if not q:
                return []
            items = list(q)
        return items[-n:]

    def get_json(self, key: str) -> Any | None:
        with self._lock:
            raw = self._kv.get(key)
        return None if raw is None else from_json(raw)

    def get_many(self, keys: list[str]) -> list[Any | None]:
        """Several values in one call (one round trip on Redis)."""
        with self._lock:
            raws = [self._kv.get(k) for k in keys]
        return [None if r is None else from_json(r) for r in raws]

    def get_many_raw(self, keys: list[str]) -> list[str | None]:
        """`get_many` unparsed: a reader that keeps what it parsed parses a value again
        only when it changed (the context loader, per event)."""
        with self._lock:
            return [self._kv.get(k) for k in keys]

    def set_json(self, key: str, value: Any) -> None:
        raw = to_json(value, fallback=str).decode()
        with self._lock:
            self._kv[key] = raw

    def delete(self, key: str) -> None:
        with self._lock:
            self._kv.pop(key, None)
