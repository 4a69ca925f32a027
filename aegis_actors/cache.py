"""The real-time cache the context loader reads first (memory here, Redis in production).

Values are JSON text so the Redis backend is a drop-in; price history is a bounded list
of (ts, price) per symbol, newest last.
"""

from __future__ import annotations

import threading
from collections import deque
from itertools import islice
from typing import Any, Protocol

from pydantic_core import from_json, to_json  # the JSON of pydantic-core: ~5x json's speed

PRICE_HISTORY = 120


class Cache(Protocol):
    kind: str

    def push_price(self, symbol: str, price: float, ts: float) -> None: ...

    def prices(self, symbol: str, n: int = PRICE_HISTORY) -> list[tuple[float, float]]: ...

    def price_series(self, symbol: str, n: int = PRICE_HISTORY) -> tuple[list[float], float | None]:
        """The last `n` prices alone and the newest one's time (None: no history)."""
        ...

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
        # per symbol, times and prices side by side: the context loader reads the prices
        # alone per event (one copy, no pairs to split)
        self._prices: dict[str, tuple[deque[float], deque[float]]] = {}
        self._kv: dict[str, str] = {}

    def push_price(self, symbol: str, price: float, ts: float) -> None:
        with self._lock:
            q = self._prices.get(symbol)
            if q is None:
                q = self._prices[symbol] = (
                    deque(maxlen=self._history),
                    deque(maxlen=self._history),
                )
            q[0].append(float(ts))  # floats, as Redis gives them back
            q[1].append(float(price))

    def prices(self, symbol: str, n: int = PRICE_HISTORY) -> list[tuple[float, float]]:
        with self._lock:
            q = self._prices.get(symbol)
            if not q or not q[0]:
                return []
            times, prices = q
            if n == 1:  # the latest print (per event: the commander, the watchdog): no walk
                return [(times[-1], prices[-1])]  # over the deque from its left end
            if 0 < n < len(times):
                skip = len(times) - n
                return list(zip(islice(times, skip, None), islice(prices, skip, None), strict=True))
            items = list(zip(times, prices, strict=True))
        return items[-n:]

    def price_series(self, symbol: str, n: int = PRICE_HISTORY) -> tuple[list[float], float | None]:
        with self._lock:
            q = self._prices.get(symbol)
            if not q or not q[0]:
                return [], None
            times, prices = q
            last = times[-1]
            if 0 < n < len(prices):
                return list(islice(prices, len(prices) - n, None)), last
            series = list(prices)
        return series[-n:], last

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
            return list(map(self._kv.get, keys))

    def set_json(self, key: str, value: Any) -> None:
        raw = to_json(value, fallback=str).decode()
        with self._lock:
            self._kv[key] = raw

    def delete(self, key: str) -> None:
        with self._lock:
            self._kv.pop(key, None)
