"""Bars from a CSV: `ts, open, high, low, close, volume[, symbol]`.

`ts` is ISO-8601 (naive means UTC) or epoch seconds, taken as the time the bar is known
(its close). A bad row is one log line and a counted reason, then skipped: a field that
is not a number, a time outside 1970..2200 (`absurd_timestamp`), bytes that are not UTF-8
(`undecodable`, one per row), a repeated symbol and time (`duplicate_bar`). Rows out of
time order are sorted and the count reported (`notes.sorted_rows`), or refused (`strict`).
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
TS_MIN, TS_MAX = 0.0, 7_258_118_400.0  # 1970-01-01 .. 2200-01-01: anything else is absurd
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
    notes: Counter[str] = field(default_factory=Counter)  # sorted_rows: fixed, not dropped
    iso: bool = False  # the input's times were ISO-8601: outputs keep them so

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
    try:
        "".join(v for v in row.values() if v).encode("utf-8")
    except UnicodeEncodeError:
        return "undecodable", None  # bytes that are not UTF-8 (kept as surrogates)
    symbol = (row.get("symbol") or "").strip() or default_symbol
    try:
        ts = parse_ts(row["ts"] or "")
    except (ValueError, OverflowError):
        return "bad_timestamp", None
    if not TS_MIN <= ts <= TS_MAX:
        return "absurd_timestamp", None
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


def is_iso(text: str | None) -> bool:
    try:
        float((text or "").strip())
    except ValueError:
        return True
    return False


def load_bars(path: str | Path, symbol: str | None = None, *, strict: bool = False) -> BarFile:
    path = Path(path)
    default_symbol = symbol or path.stem.upper()
    try:  # undecodable bytes survive as surrogates, so one bad byte costs one row
        f = path.open(encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise BarFileError(f"data file {path}: {exc.strerror or exc}") from None
    out = BarFile(bars=[])
    iso_rows = 0
    with f:
        reader = csv.DictReader(f)
        try:
            header = [h.strip() for h in reader.fieldnames or []]
        except csv.Error as exc:
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
            except csv.Error as exc:
                line += 1
                _bad(out, "unreadable", path, line, str(exc))
                continue
            line = reader.line_num
            reason, bar = check_row(row, default_symbol)
            if bar is None:
                _bad(out, reason, path, line, row)
                continue
            iso_rows += is_iso(row["ts"])
            out.bars.append(bar)
    if not out.bars:
        raise BarFileError(f"data file {path}: no valid bars")
    out.iso = iso_rows * 2 > len(out.bars)
    _order(out, path, strict)
    return out


def _order(out: BarFile, path: Path, strict: bool) -> None:
    """Sort by time (stable), count what was out of order, drop repeated symbol+time."""
    last: dict[str, float] = {}
    unsorted = 0
    for b in out.bars:
        prev = last.get(b.symbol)
        if prev is not None and b.ts < prev:
            unsorted += 1
        else:
            last[b.symbol] = b.ts
    if unsorted and strict:
        raise BarFileError(f"data file {path}: {unsorted} rows out of time order (--strict)")
    if unsorted:
        out.notes["sorted_rows"] += unsorted
        log.warning("data file {}: {} rows out of time order; sorted", path.name, unsorted)
    out.bars.sort(key=lambda b: b.ts)  # stable: same-time bars keep file order
    seen: set[tuple[str, float]] = set()
    kept: list[Bar] = []
    for b in out.bars:
        key = (b.symbol, b.ts)
        if key in seen:
            _bad(out, "duplicate_bar", path, 0, b)
            continue
        seen.add(key)
        kept.append(b)
    out.bars = kept


def load_many(paths: list[Path], symbol: str | None = None, *, strict: bool = False) -> BarFile:
    """Several files (one symbol each, or a symbol column) as one time-ordered stream."""
    if not paths:
        raise BarFileError("no data file given")
    files = [load_bars(p, symbol if len(paths) == 1 else None, strict=strict) for p in paths]
    if len(files) == 1:
        return files[0]
    merged = BarFile(bars=[b for f in files for b in f.bars])
    for f in files:
        merged.bad.update(f.bad)
        merged.notes.update(f.notes)
    merged.iso = all(f.iso for f in files)
    merged.bars.sort(key=lambda b: b.ts)
    seen: set[tuple[str, float]] = set()
    kept = []
    for b in merged.bars:
        if (b.symbol, b.ts) in seen:
            merged.bad["duplicate_bar"] += 1
            continue
        seen.add((b.symbol, b.ts))
        kept.append(b)
    merged.bars = kept
    return merged


def _bad(out: BarFile, reason: str, path: Path, line: int, raw: object) -> None:
    out.bad[reason] += 1
    if sum(out.bad.values()) <= LOG_LINES_MAX:
        log.warning("bad bar skipped ({}) at {}:{}: {!r}", reason, path.name, line, raw)
