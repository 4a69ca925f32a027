"""Bars from a CSV: `ts, open, high, low, close, volume[, symbol]`.

`ts` is ISO-8601 (naive means UTC) or epoch seconds, taken as the time the bar is known
(its close). A bad row is one log line and a counted reason, then skipped; per symbol,
timestamps must not go backwards (the live tick rule) and a repeated one is a duplicate.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger

log = logger.bind(actor="backtest")

REQUIRED = ("ts", "open", "high", "low", "close", "volume")
LOG_LINES_MAX = 20  # bad rows logged one line each up to this; all are counted


class BarFileError(Exception):
    """The data file cannot be used at all (missing, unreadable, no header, no bars)."""


@dataclass(frozen=True)
class Bar:
    symbol: str
    ts: float
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass
class BarFile:
    bars: list[Bar]  # in time order (ties keep file order)
    bad: Counter[str] = field(default_factory=Counter)

    @property
    def symbols(self) -> list[str]:
        return sorted({b.symbol for b in self.bars})


def parse_ts(text: str) -> float:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"not a finite time: {text!r}")
    return value


def _number(row: dict[str, str | None], key: str) -> float:
    value = float((row.get(key) or "").strip())
    if not math.isfinite(value):
        raise ValueError(f"{key} not finite")
    return value


def check_row(row: dict[str, str | None], default_symbol: str) -> tuple[str, Bar | None]:
    """(reason, None) for a bad row, ("", bar) for a good one."""
    if None in row or any(row.get(k) is None for k in REQUIRED):
        return "bad_columns", None  # too many or too few fields
    symbol = (row.get("symbol") or "").strip() or default_symbol
    try:
        ts = parse_ts(row["ts"] or "")
    except ValueError:
        return "bad_timestamp", None
    try:
        o, h, lo, c = (_number(row, k) for k in ("open", "high", "low", "close"))
    except ValueError:
        return "bad_price", None
    if min(o, h, lo, c) <= 0 or not (lo <= min(o, c) and max(o, c) <= h):
        return "bad_price", None
    try:
        volume = _number(row, "volume")
    except ValueError:
        return "bad_volume", None
    if volume < 0:
        return "bad_volume", None
    return "", Bar(symbol, ts, o, h, lo, c, volume)


def load_bars(path: str | Path, symbol: str | None = None) -> BarFile:
    path = Path(path)
    default_symbol = symbol or path.stem.upper()
    try:
        f = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise BarFileError(f"data file {path}: {exc.strerror or exc}") from None
    out = BarFile(bars=[])
    last: dict[str, float] = {}
    with f:
        reader = csv.DictReader(f)
        try:
            header = [h.strip() for h in reader.fieldnames or []]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise BarFileError(f"data file {path}: unreadable header: {exc}") from None
        reader.fieldnames = header
        missing = [k for k in REQUIRED if k not in header]
        if missing:
            raise BarFileError(f"data file {path}: missing columns {', '.join(missing)}")
        line = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (UnicodeDecodeError, csv.Error) as exc:
                line += 1
                _bad(out, "unreadable", path, line, str(exc))
                continue
            line = reader.line_num
            reason, bar = check_row(row, default_symbol)
            if bar is not None:
                prev = last.get(bar.symbol)
                if prev is not None and bar.ts < prev:
                    reason, bar = "timestamp_backwards", None
                elif prev is not None and bar.ts == prev:
                    reason, bar = "duplicate_bar", None
            if bar is None:
                _bad(out, reason, path, line, row)
                continue
            last[bar.symbol] = bar.ts
            out.bars.append(bar)
    if not out.bars:
        raise BarFileError(f"data file {path}: no valid bars")
    out.bars.sort(key=lambda b: b.ts)  # stable: same-time bars keep file order
    return out


def _bad(out: BarFile, reason: str, path: Path, line: int, raw: object) -> None:
    out.bad[reason] += 1
    if sum(out.bad.values()) <= LOG_LINES_MAX:
        log.warning("bad bar skipped ({}) at {}:{}: {!r}", reason, path.name, line, raw)
