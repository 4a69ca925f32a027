"""Price indicators for the rules backend: moving averages, momentum, RSI, volatility.

Plain float arithmetic: `statistics.pstdev` works on exact fractions and cost more than
the rest of an event's path; prices are floats already, so the exactness bought nothing.
"""

from __future__ import annotations

import math
import operator
from functools import partial


def returns(prices: list[float]) -> list[float]:
    return [b / a - 1.0 for a, b in zip(prices, prices[1:], strict=False) if a > 0]


def sma(prices: list[float], n: int) -> float:
    window = prices[-n:]
    return math.fsum(window) / len(window) if window else 0.0


def momentum(prices: list[float], n: int) -> float:
    """Return over the last `n` prints (0 without enough history)."""
    if len(prices) <= n or prices[-n - 1] <= 0:
        return 0.0
    return prices[-1] / prices[-n - 1] - 1.0


def volatility(prices: list[float], n: int = 20) -> float:
    return _sd(returns(prices[-n - 1 :]))


def volatility_now_and_before(prices: list[float], n: int = 20) -> tuple[float, float]:
    """`volatility(prices, n)` and `volatility(prices[:-1], n)`, each return computed once
    (the two windows share all but one return)."""
    window = prices[-n - 2 : -1]
    if window and min(window) <= 0:  # a skipped return shifts the windows: the plain way
        return volatility(prices, n), volatility(prices[:-1], n)
    w = prices[-n - 2 :]
    r = [b / a - 1.0 for a, b in zip(w, w[1:], strict=False)]
    return _sd(r[-n:]), _sd(r[:-1][-n:])


def _sd(r: list[float]) -> float:
    """Population standard deviation (0 under two values), float arithmetic."""
    k = len(r)
    if k < 2:
        return 0.0
    mean = math.fsum(r) / k
    # one list, not a generator: fsum over it is ~2x cheaper
    return math.sqrt(math.fsum([(x - mean) * (x - mean) for x in r]) / k)


def rsi(prices: list[float], n: int = 14) -> float:
    """Wilder's RSI over the last `n` changes, 0..100 (50 when flat or too short)."""
    return 50.0 if len(prices) <= n else _rsi_of(prices[-n - 1 :])


def sma_cross(prices: list[float], fast: int, slow: int) -> int:
    """+1 golden cross (fast crossed above slow on the last print), -1 death cross, else 0."""
    return cross_of(prices, fast, slow, sma(prices, fast) - sma(prices, slow))


def cross_of(prices: list[float], fast: int, slow: int, now: float) -> int:
    """`sma_cross` given `now` = sma(prices, fast) - sma(prices, slow), already computed."""
    if len(prices) < slow + 1:
        return 0
    before = sma(prices[:-1], fast) - sma(prices[:-1], slow)
    if before <= 0 < now:
        return 1
    if before >= 0 > now:
        return -1
    return 0


def rules_set(
    prices: list[float], fast: int, slow: int, mom: int, rsi_n: int
) -> tuple[float, float, int, float, float, float, float]:
    """(sma fast, sma slow, cross, momentum, rsi, volatility, volatility before the last
    print) in one pass over shared windows: bit for bit what `sma`, `cross_of`,
    `momentum`, `rsi` and `volatility_now_and_before` give, at about half their cost
    (they run once per event)."""
    fsum = math.fsum
    n = len(prices)
    w = prices[-fast:]
    sma_f = fsum(w) / len(w) if w else 0.0
    w = prices[-slow:]
    sma_s = fsum(w) / len(w) if w else 0.0
    cross = 0
    if n >= slow + 1:  # cross_of: the averages one print earlier (prices[:-1][-k:])
        wf, ws = prices[-fast - 1 : -1], prices[-slow - 1 : -1]
        before = fsum(wf) / len(wf) - fsum(ws) / len(ws)
        now = sma_f - sma_s
        if before <= 0 < now:
            cross = 1
        elif before >= 0 > now:
            cross = -1
    momentum_ = momentum(prices, mom)
    rsi_ = rsi(prices, rsi_n)
    vol, vol_prev = volatility_now_and_before(prices, slow)
    return sma_f, sma_s, cross, momentum_, rsi_, vol, vol_prev


_ABOVE_0 = partial(operator.lt, 0)  # c > 0 as 0 < c
_BELOW_0 = partial(operator.gt, 0)  # c < 0 as 0 > c


def _rsi_of(w: list[float]) -> float:
    """`rsi` of the last n changes, given the last n + 1 prices (n >= 1)."""
    changes = [b - a for a, b in zip(w, w[1:], strict=False)]
    k = len(changes)
    if not k:
        return 50.0
    # filter in C: the same changes summed in the same order as a comprehension's
    gain = sum(filter(_ABOVE_0, changes)) / k
    loss = -sum(filter(_BELOW_0, changes)) / k
    if loss == 0:
        return 100.0 if gain > 0 else 50.0
    return 100.0 - 100.0 / (1.0 + gain / loss)
