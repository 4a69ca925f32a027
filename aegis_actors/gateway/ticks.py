"""Tick validation: a bad tick is dropped with a reason, never allowed to crash the feed."""

from __future__ import annotations

import math

MAX_FUTURE_S = 5.0


def check_tick(
    symbol: object,
    price: object,
    volume: object,
    ts: object,
    *,
    known: set[str] | frozenset[str],
    last_ts: float | None,
    now: float,
) -> str | None:
    """The reason the tick is bad, or None when it is good."""
    if not isinstance(symbol, str) or symbol not in known:
        return "unknown_symbol"
    if isinstance(price, bool) or not isinstance(price, int | float):
        return "bad_price"
    if not math.isfinite(price) or price <= 0:
        return "bad_price"
    if isinstance(volume, bool) or not isinstance(volume, int | float):
        return "bad_volume"
    if not math.isfinite(volume) or volume < 0:
        return "bad_volume"
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return "bad_timestamp"
    if ts > now + MAX_FUTURE_S:
        return "future_timestamp"
    if last_ts is not None and ts < last_ts:
        return "timestamp_backwards"
    return None
