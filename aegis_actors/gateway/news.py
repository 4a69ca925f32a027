"""News: poll a JSON endpoint (or a local JSON-lines file), dedupe by id, map to symbols."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from aegis_actors.base import AegisActor
from aegis_actors.gateway.admission import new_event_id
from aegis_actors.messages import EventKind, MarketEvent
from aegis_actors.runtime import MARKET

SEEN_MAX = 10_000


@dataclass(frozen=True)
class _Poll:
    pass


def match_symbols(
    item: dict[str, Any], known: set[str], keywords: dict[str, list[str]]
) -> list[str]:
    found = [s for s in item.get("symbols", []) or [] if s in known]
    text = str(item.get("headline", "")).lower()
    for symbol, words in keywords.items():
        if symbol in known and symbol not in found and any(w.lower() in text for w in words):
            found.append(symbol)
    for symbol in known:  # a bare ticker in the headline
        if symbol not in found and f" {symbol.lower()} " in f" {text} ":
            found.append(symbol)
    return found


class News(AegisActor):
    def on_start(self) -> None:
        self.cfg = self.settings.news
        self.seen: set[str] = set()
        self.order: deque[str] = deque()
        self.emitted = 0
        self.polls = 0
        self.session = requests.Session()
        if self.cfg.url or self.cfg.file:
            self.after(0.0, _Poll())
        else:
            self.log.info("news: no source configured (news.url / news.file)")

    def fetch(self) -> list[dict[str, Any]]:
        if self.cfg.url:
            resp = self.session.get(self.cfg.url, timeout=3)
            resp.raise_for_status()
            data = resp.json()
            return data.get("items", []) if isinstance(data, dict) else list(data)
        lines = Path(self.cfg.file).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def on__Poll(self, _msg: _Poll) -> None:
        self.polls += 1
        try:
            items = self.fetch()
        except (OSError, ValueError, requests.RequestException) as exc:
            self.log.error("news poll failed: {}", exc)
            self.metrics.errors.labels("news_poll").inc()
            items = []
        known = set(self.settings.feed.symbols)
        for item in items:
            if not isinstance(item, dict) or "id" not in item:
                self.metrics.errors.labels("news_item").inc()
                continue
            nid = str(item["id"])
            if nid in self.seen:
                continue
            self.remember(nid)
            for symbol in match_symbols(item, known, self.cfg.keywords):
                self.emitted += 1
                self.send(
                    MARKET,
                    MarketEvent(
                        event_id=new_event_id(),
                        kind=EventKind.NEWS,
                        symbol=symbol,
                        ts=self.clock.now(),
                        headline=str(item.get("headline", ""))[:500],
                        source="news",
                    ),
                )
        self.after(self.cfg.poll_every_s, _Poll())

    def remember(self, nid: str) -> None:
        self.seen.add(nid)
        self.order.append(nid)
        if len(self.order) > SEEN_MAX:
            self.seen.discard(self.order.popleft())

    def stopping(self) -> None:
        self.session.close()

    def status(self) -> dict[str, Any]:
        return {"polls": self.polls, "emitted": self.emitted, "seen": len(self.seen)}
