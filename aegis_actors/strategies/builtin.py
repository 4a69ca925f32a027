"""The built-in strategies: moving-average cross, momentum, RSI. Pure and causal."""

from __future__ import annotations

from collections.abc import Sequence


def sma(closes: Sequence[float], n: int) -> list[float | None]:
    """Simple moving average by a running sum: None until n closes are known."""
    out: list[float | None] = [None] * len(closes)
    total = 0.0
    for i, c in enumerate(closes):
        total += c
        if i >= n:
            total -= closes[i - n]
        if i >= n - 1:
            out[i] = total / n
    return out


def rsi(closes: Sequence[float], n: int) -> list[float | None]:
    """Wilder's RSI: None until n changes are known."""
    out: list[float | None] = [None] * len(closes)
    gain = loss = 0.0
    for i in range(1, len(closes)):
        d = closes[i] - closes[i - 1]
        up, down = max(d, 0.0), max(-d, 0.0)
        if i <= n:
            gain += up / n
            loss += down / n
            if i < n:
                continue
        else:
            gain = (gain * (n - 1) + up) / n
            loss = (loss * (n - 1) + down) / n
        out[i] = 100.0 if loss == 0 else 100.0 - 100.0 / (1.0 + gain / loss)
    return out


def _int(name: str, value: float, low: int = 1) -> int:
    if value != int(value) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value:g}")
    return int(value)


class SmaCross:
    """+1 on the bar the fast SMA crosses above the slow one, -1 when it crosses below.

    `short=0` turns -1 into "close the long" only (the runner's long-only switch)."""

    name = "sma_cross"

    def __init__(self, fast: float = 10, slow: float = 20, short: float = 1) -> None:
        self.fast, self.slow = _int("fast", fast), _int("slow", slow)
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        self.short = bool(short)

    def signals(self, closes: Sequence[float]) -> list[int]:
        f, s = sma(closes, self.fast), sma(closes, self.slow)
        out = [0] * len(closes)
        for i in range(1, len(closes)):
            f0, s0, f1, s1 = f[i - 1], s[i - 1], f[i], s[i]
            if f0 is None or s0 is None or f1 is None or s1 is None:
                continue
            if f0 <= s0 and f1 > s1:
                out[i] = 1
            elif f0 >= s0 and f1 < s1:
                out[i] = -1
        return out


class Momentum:
    """+1 when the return over `lookback` bars first rises above `threshold` (a fraction),
    -1 when it first falls below -threshold: entries on the turn, not on every bar."""

    name = "momentum"

    def __init__(self, lookback: float = 20, threshold: float = 0.02, short: float = 1) -> None:
        self.lookback = _int("lookback", lookback)
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold:g}")
        self.threshold, self.short = float(threshold), bool(short)

    def signals(self, closes: Sequence[float]) -> list[int]:
        n, th = self.lookback, self.threshold
        out = [0] * len(closes)
        state = 0
        for i in range(n, len(closes)):
            ret = closes[i] / closes[i - n] - 1.0
            now = 1 if ret > th else -1 if ret < -th else state
            if now != state:
                out[i] = now
                state = now
        return out


class Rsi:
    """+1 when RSI crosses down into oversold (< low), -1 when it crosses up into
    overbought (> high): mean reversion."""

    name = "rsi"

    def __init__(
        self, period: float = 14, low: float = 30, high: float = 70, short: float = 1
    ) -> None:
        self.period = _int("period", period, 2)
        if not 0 < low < high < 100:
            raise ValueError(f"need 0 < low < high < 100, got low={low:g} high={high:g}")
        self.low, self.high, self.short = float(low), float(high), bool(short)

    def signals(self, closes: Sequence[float]) -> list[int]:
        r = rsi(closes, self.period)
        out = [0] * len(closes)
        for i in range(1, len(closes)):
            r0, r1 = r[i - 1], r[i]
            if r0 is None or r1 is None:
                continue
            if r0 >= self.low > r1:
                out[i] = 1
            elif r0 <= self.high < r1:
                out[i] = -1
        return out
