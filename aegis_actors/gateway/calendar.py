"""Economic calendar: scheduled releases become events for each affected symbol at release time."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from aegis_actors.base import AegisActor
from aegis_actors.gateway.market import new_event_id
from aegis_actors.messages import EventKind, MarketEvent
from aegis_actors.runtime import MARKET


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
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def parse_releases(rows: list[dict[str, Any]]) -> list[Release]:
    out = []
    for row in rows:
        symbols = row.get("symbols", [])
        if isinstance(symbols, str):
            symbols = [s.strip() for s in symbols.replace(";", ",").split(",") if s.strip()]
        out.append(
            Release(
                name=str(row["name"]),
                ts=parse_time(row["time"]),
                symbols=tuple(symbols),
                importance=str(row.get("importance", "medium")),
            )
        )
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


class Calendar(AegisActor):
    def on_start(self) -> None:
        cfg = self.settings.calendar
        self.fired = 0
        self.scheduled = 0
        try:
            releases = load_releases(cfg.file, cfg.url)
        except (OSError, ValueError, KeyError, requests.RequestException) as exc:
            self.log.error("calendar could not be loaded: {}", exc)
            self.metrics.errors.labels("calendar_load").inc()
            releases = []
        now = self.clock.now()
        known = set(self.settings.feed.symbols)
        for r in releases:
            if r.ts < now:
                continue  # past releases are not replayed
            if not set(r.symbols) & known:
                continue
            self.after(r.ts - now, _Due(r))
            self.scheduled += 1
        if cfg.file or cfg.url:
            self.log.info("calendar: {} upcoming releases scheduled", self.scheduled)
        else:
            self.log.info("calendar: no schedule configured (calendar.file / calendar.url)")

    def on__Due(self, msg: _Due) -> None:
        r = msg.release
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
        return {"scheduled": self.scheduled, "fired": self.fired}
