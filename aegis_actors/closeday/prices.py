"""The last price the system saw of each symbol at any time: from fills and decisions."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field


@dataclass
class PriceBook:
    """The last known price of each symbol at any time, from fills and decisions."""

    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, symbol: str, ts: float, price: float) -> None:
        if price > 0 and math.isfinite(price):
            self.series.setdefault(symbol, []).append((ts, price))

    def done(self) -> None:
        for s in self.series.values():
            s.sort()

    def at(self, symbol: str, ts: float) -> float | None:
        s = self.series.get(symbol) or []
        i = bisect_right(s, (ts, math.inf))
        return s[i - 1][1] if i else None

    def after(self, symbol: str, ts: float) -> float | None:
        s = self.series.get(symbol) or []
        i = bisect_right(s, (ts, math.inf))
        return s[i][1] if i < len(s) else None
