"""Economic calendar: scheduled releases become events for each affected symbol at release time."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from loguru import logger

from aegis_actors.base import AegisActor
from aegis_actors.gateway.admission import new_event_id
from aegis_actors.messages import EventKind, KvGet, KvPut, KvValue, MarketEvent
from aegis_actors.runtime import MARKET, STORE

log = logger.bind(actor="calendar")


@dataclass(frozen=True)
class Release:
    name: str
    ts: float
    symbols: tuple[str, ...]
    importance: str = "medium"


@dataclass(frozen=True)
class _Due:
    release: Release


def parse_time(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:  # CSV cells are text: epoch seconds arrive as "1767360000"
        return float(value)
    except (TypeError, ValueError):
        pass
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def parse_releases(rows: list[dict[str, Any]]) -> list[Release]:
    """Good rows become releases; a bad row is skipped with one log line, not the file."""
    out = []
    for row in rows:
        try:
            symbols = row.get("symbols", [])
            if isinstance(symbols, str):
                symbols = [s.strip() for s in symbols.replace(";", ",").split(",") if s.strip()]
            out.append(
                Release(
                    name=str(row["name"]),
                    ts=parse_time(row["time"]),
                    symbols=tuple(str(s) for s in symbols),
                    importance=str(row.get("importance", "medium")),
                )
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("calendar row skipped ({}): {!r}", exc, row)
    return out


def load_releases(file: str = "", url: str = "") -> list[Release]:
    if url:
        resp = requests.get(url, timeout=5)
        resp.raise_for_status()
        return parse_releases(resp.json())
    if not file:
        return []
    path = Path(file)
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return parse_releases(list(csv.DictReader(f)))
    return parse_releases(json.loads(path.read_text(encoding="utf-8")))


K_LAST_FIRED = "calendar:last_fired"  # durable kv: {"ts": release time, "names": [...]}


def already_fired(r: Release, last: dict[str, Any] | None) -> bool:
    """Releases are fired in time order, so the last fired one marks all before it."""
    if not last:
        return False
    ts = float(last.get("ts", 0.0))
    return r.ts < ts or (r.ts == ts and r.name in last.get("names", []))


class Calendar(AegisActor):
    """Fires each release once, at its time; after a restart, a release missed while down
    (no older than `calendar.catch_up_s`) fires once at start, and one already fired never
    again: the last fired release is written to the durable store before its events go."""

    def on_start(self) -> None:
        cfg = self.settings.calendar
        self.fired = 0
        self.scheduled = 0
        self.caught_up = 0
        self.last: dict[str, Any] | None = None
        if not (cfg.file or cfg.url):
            self.log.info("calendar: no schedule configured (calendar.file / calendar.url)")
            return
        try:
            releases = load_releases(cfg.file, cfg.url)
        except (OSError, ValueError, KeyError, requests.RequestException) as exc:
            self.log.error("calendar could not be loaded: {}", exc)
            self.metrics.errors.labels("calendar_load").inc()
            releases = []
        catch_up = cfg.catch_up_s
        try:
            self.last = self.ask(STORE, KvGet(key=K_LAST_FIRED), 3.0, KvValue).value
        except Exception as exc:  # unknown history: replay nothing rather than twice
            self.log.error("calendar: last fired release unreadable ({}); no catch-up", exc)
            self.metrics.errors.labels("calendar_history").inc()
            catch_up = 0.0
        now = self.clock.now()
        known = set(self.settings.feed.symbols)
        for r in sorted(releases, key=lambda r: r.ts):
            if already_fired(r, self.last) or not set(r.symbols) & known:
                continue
            if r.ts < now:
                if now - r.ts > catch_up:
                    continue  # too old to matter
                self.caught_up += 1
                self.log.warning("release {} was missed while down: firing it now", r.name)
            self.after(max(0.0, r.ts - now), _Due(r))
            self.scheduled += 1
        self.log.info("calendar: {} releases scheduled", self.scheduled)

    def on__Due(self, msg: _Due) -> None:
        r = msg.release
        if already_fired(r, self.last):
            return
        names = [r.name]
        if self.last and float(self.last.get("ts", 0.0)) == r.ts:
            names = [*self.last.get("names", []), r.name]
        self.last = {"ts": r.ts, "names": names}
        self.send(STORE, KvPut(key=K_LAST_FIRED, value=self.last, ts=self.clock.now()))
        self.fired += 1
        self.log.info("release due: {} ({}) for {}", r.name, r.importance, ",".join(r.symbols))
        for symbol in r.symbols:
            if symbol in self.settings.feed.symbols:
                self.send(
                    MARKET,
                    MarketEvent(
                        event_id=new_event_id(),
                        kind=EventKind.CALENDAR,
                        symbol=symbol,
                        ts=self.clock.now(),
                        headline=f"{r.name} ({r.importance})",
                        source="calendar",
                    ),
                )

    def status(self) -> dict[str, Any]:
        return {
            "scheduled": self.scheduled,
            "fired": self.fired,
            "caught_up": self.caught_up,
            "last_fired": self.last,
        }
