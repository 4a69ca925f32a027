"""A seeded synthetic market: a random walk with trending regimes per symbol and a VIX.

Deterministic for a seed, so a run, a test and a bench see the same prices.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Print:
    symbol: str
    price: float
    volume: float


class SyntheticMarket:
    def __init__(
        self,
        symbols: list[str],
        *,
        seed: int = 7,
        volatility: float = 0.002,
        start_price: float = 100.0,
        vix_start: float = 18.0,
        regime_steps: int = 40,
    ) -> None:
        self._rng = random.Random(seed)
        self._vol = volatility
        self._regime_steps = regime_steps
        self._step = 0
        self.prices = {s: round(start_price * (0.5 + self._rng.random()), 2) for s in symbols}
        self._drift = {s: 0.0 for s in symbols}
        self.vix = vix_start
        self._vix_mean = vix_start

    def step(self) -> tuple[list[Print], float]:
        """One tick for every symbol, and the volatility index after it."""
        self._step += 1
        rng = self._rng
        if self._step % self._regime_steps == 1:
            for s in self._drift:
                self._drift[s] = rng.choice((-1.0, 0.0, 1.0)) * self._vol * 0.6
        out = []
        for s, p in self.prices.items():
            p = p * math.exp(self._drift[s] + rng.gauss(0.0, self._vol))
            p = max(0.01, round(p, 4))
            self.prices[s] = p
            out.append(Print(s, p, float(rng.randint(1, 50) * 100)))
        # Ornstein-Uhlenbeck around the starting level; never below 5.
        self.vix = max(5.0, self.vix + 0.05 * (self._vix_mean - self.vix) + rng.gauss(0.0, 0.3))
        return out, round(self.vix, 2)
