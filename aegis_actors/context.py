"""The context loader: injects the symbol's state into each event, cache first.

Reads the real-time cache; on a miss it asks the store (durable) and warms the cache
with what it found. Prices older than `STALE_AFTER_S` mark the context stale (SPEC 4.1
tier 1: analysis may go on, on cached data no older than 30 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import from_json

from aegis_actors.base import AegisActor
from aegis_actors.cache import Cache
from aegis_actors.gateway.intake import LATE
from aegis_actors.messages import (
    CONTEXT,
    T0,
    Context,
    DurableState,
    EventKind,
    EventShed,
    LoadState,
    MarketEvent,
    ModeChange,
    PositionView,
    Posture,
    PostureParams,
    TradingMode,
)
from aegis_actors.roles import rules
from aegis_actors.runtime import ANALYST, COMMANDER, MARKET, STORE, VERIFIER
from aegis_actors.watchdog.sla import STAGES

STALE_AFTER_S = 30.0
HISTORY = 60

# Cache keys shared by the writers (execution, posture, watchdog, commander).
K_POSITIONS = "positions"  # {symbol: PositionView JSON}
K_POSTURE = "posture"  # {"posture": ..., "params": {...}}
K_MODE = "mode"
K_ACCOUNT = "account"  # {"equity": ..., "cash": ...}
K_SESSION = "session"  # {"session_id": ..., "opened_at": ...}
K_FEED = "feed_state"  # {"tier": ..., "stale": bool, "since": ts data stopped} (gateway)


# the cache's strings to members by a dict (an Enum's own lookup by value is ~1 us)
_POSTURES: dict[str, Posture] = {p.value: p for p in Posture}
_MODES: dict[str, TradingMode] = {m.value: m for m in TradingMode}
_GUERRILLA, _NORMAL = Posture.GUERRILLA, TradingMode.NORMAL
_TICK = EventKind.TICK

# read together per event (one lock or round trip); the feed's state last
_DOCS = [K_POSITIONS, K_POSTURE, K_MODE, K_SESSION, K_ACCOUNT, K_FEED]

_PARAMS: dict[tuple[int, Posture], tuple[Any, PostureParams]] = {}


def posture_params(settings: Any, posture: Posture) -> PostureParams:
    """The posture's numbers from the settings, validated once per settings object."""
    key = (id(settings), posture)
    hit = _PARAMS.get(key)
    if hit is not None and hit[0] is settings:
        return hit[1]
    level = getattr(settings.posture, posture.value)
    params = PostureParams(**level.model_dump())
    if len(_PARAMS) > 64:
        _PARAMS.clear()
    _PARAMS[key] = (settings, params)
    return params


@dataclass(frozen=True, slots=True)
class _View:
    """What the shared documents say for every symbol alike."""

    open_positions: int
    capital: float
    posture: Posture
    params: PostureParams
    mode: TradingMode
    session_id: str


class ContextLoader(AegisActor):
    def on_start(self) -> None:
        self.params: dict[tuple[Any, ...], PostureParams] = {}  # validated once per value
        self.parsed: dict[str, tuple[str, Any]] = {}  # key -> (its text, parsed)
        self.raws: list[str | None] = []  # the documents' texts last read, and parsed:
        self.docs: list[Any] = []
        # What the documents say for every symbol, worked out once per set of parsed
        # documents (they change with the book, not per event): (documents, view).
        self.view: tuple[list[Any], _View] | None = None
        self.views: dict[str, PositionView | None] = {}  # symbol -> of `view`'s positions
        # The rules' indicators, once per event for the roles that read them; a backtest
        # whose three roles are a strategy's (signals computed per series) reads none.
        backends = self.rt.role_backends
        self.indicators = not all(
            getattr(backends.get(r), "kind", "") == "strategy"
            for r in ("analyst", "verifier", "commander")
        )
        self.parallel = self.settings.roles.parallel_verification  # read per event
        self.loaded = 0
        self.misses = 0
        self.stale = 0
        # A tick that waited in the tree past its detect-to-analysis critical time would
        # only be failed (and three such in a row force the posture defensive): it is shed
        # here instead, before any work, and its symbol's next tick goes in. Never in a
        # replay, where every bar is analysed.
        self.late_after_s = (
            float("inf")
            if self.settings.feed.kind == "replay"
            else STAGES["detect_to_analysis"][2].critical_ms / 1000.0
        )

    def on_MarketEvent(self, event: MarketEvent) -> None:
        now = self.clock.now()
        waited = now - event.stamps.get(T0, now)
        if waited >= self.late_after_s and event.kind is _TICK:
            self.send(
                MARKET,
                EventShed(
                    event_id=event.event_id,
                    symbol=event.symbol,
                    reason=LATE,
                ),
            )
            return
        event = event.stamp(CONTEXT, now)
        ctx = self.inject(event, now)
        self.loaded += 1
        self.send(COMMANDER, ctx)
        self.send(ANALYST, ctx)
        if self.parallel:
            self.send(VERIFIER, ctx)

    def on_ModeChange(self, _msg: ModeChange) -> None:
        """Nothing to hold: the mode is read from the cache per event."""

    def inject(self, event: MarketEvent, now: float) -> Context:
        cache = self.rt.cache
        prices, last_ts = cache.price_series(event.symbol, HISTORY)
        age = now - last_ts if last_ts is not None else None
        if not prices and event.price is not None:
            prices, age = [event.price], now - event.ts
        stale = age is not None and age > STALE_AFTER_S
        docs = self.documents(cache)
        feed = docs[5]
        if feed and feed.get("stale"):  # the feed went silent (SPEC 4.2 tier 3-10 s)
            stale = True
            age = max(age or 0.0, now - float(feed.get("since", now)))
        if stale:
            self.stale += 1
        if docs[0] is None or docs[1] is None or docs[2] is None:
            view, pos = self.durable_view(event.symbol, docs)
        else:
            view, pos = self.cached_view(event.symbol, docs)
        return Context.trusted(  # each value typed here; the cache's documents validated
            event_id=event.event_id,
            stamps=event.stamps,
            event=event,
            symbol=event.symbol,
            prices=prices,
            price_age_s=None if age is None else float(age),
            stale=stale,
            position=pos,
            open_positions=view.open_positions,
            capital=view.capital,
            posture=view.posture,
            params=view.params,
            mode=view.mode,
            session_id=view.session_id,
            indicators=rules.compute(prices) if self.indicators else {},
        )

    def cached_view(self, symbol: str, docs: list[Any]) -> tuple[_View, PositionView | None]:
        """The documents' view and the symbol's position, each worked out (and validated)
        once per set of documents: most events find them unchanged."""
        held = self.view
        if held is None or held[0] is not docs:
            held = self.view = (docs, self.make_view(docs[0], docs[1], docs[2], docs[3], docs[4]))
            self.views = {}
        views = self.views
        if symbol in views:
            return held[1], views[symbol]
        pos = docs[0].get(symbol)
        view = views[symbol] = PositionView(**pos) if pos else None
        return held[1], view

    def durable_view(self, symbol: str, docs: list[Any]) -> tuple[_View, PositionView | None]:
        """A document missing from the cache: the durable store's (and warm the cache)."""
        positions, posture_doc, mode, session, account = docs[:5]
        durable = self.load_durable(symbol)
        positions = positions if positions is not None else durable.positions
        posture_doc = posture_doc or durable.posture
        mode = mode or (durable.mode.value if durable.mode else None)
        session = session or durable.session
        pos = positions.get(symbol)
        view = self.make_view(positions, posture_doc, mode, session, account)
        return view, PositionView(**pos) if pos else None

    def make_view(
        self,
        positions: dict[str, Any],
        posture_doc: dict[str, Any] | None,
        mode: str | None,
        session: dict[str, Any] | None,
        account: dict[str, Any] | None,
    ) -> _View:
        posture = (
            (_POSTURES.get(posture_doc["posture"]) or Posture(posture_doc["posture"]))
            if posture_doc
            else _GUERRILLA
        )
        params = self.posture_params(posture, posture_doc)
        account = account or {}
        session = session or {}
        return _View(
            open_positions=len(positions),
            capital=float(account.get("equity", self.settings.broker.capital)),
            posture=posture,
            params=params,
            mode=(_MODES.get(mode) or TradingMode(mode)) if mode else _NORMAL,
            session_id=str(session.get("session_id", "")),
        )

    def documents(self, cache: Cache) -> list[Any]:
        """The shared documents (`_DOCS`), each parsed again only when its text changed
        (the positions document grows with the book); the same list while none did.
        Read-only here: the parsed values are shared from one event to the next."""
        raws = cache.get_many_raw(_DOCS)
        if raws == self.raws:  # the memory cache's own strings: compared by identity
            return self.docs
        out: list[Any] = []
        parsed = self.parsed
        for key, raw in zip(_DOCS, raws, strict=True):
            if raw is None:
                out.append(None)
                continue
            hit = parsed.get(key)
            if hit is None or hit[0] != raw:
                hit = parsed[key] = (raw, from_json(raw))
            out.append(hit[1])
        self.raws, self.docs = raws, out
        return out

    def posture_params(self, posture: Posture, doc: dict[str, Any] | None) -> PostureParams:
        """The posture's numbers from the cache's document, validated once per value."""
        raw = doc.get("params") if doc else None
        # the document's own key order (one writer): a reordered one is one more entry
        key = (posture, tuple(raw.items()) if isinstance(raw, dict) else None)
        params = self.params.get(key)
        if params is None:
            params = (
                PostureParams(**raw) if raw is not None else posture_params(self.settings, posture)
            )
            if len(self.params) > 64:
                self.params.clear()
            self.params[key] = params
        return params

    def load_durable(self, symbol: str) -> DurableState:
        """Cache miss: read the durable store, then warm the cache."""
        self.misses += 1
        try:
            state = self.ask(STORE, LoadState(symbol=symbol), 2.0, DurableState)
        except Exception as exc:  # store down or slow: run on what we have
            self.log.warning("durable read failed on cache miss: {}", exc)
            self.metrics.errors.labels("context_durable_read").inc()
            return DurableState()
        cache = self.rt.cache
        if cache.get_json(K_POSITIONS) is None:
            cache.set_json(K_POSITIONS, state.positions)
        if state.posture and cache.get_json(K_POSTURE) is None:
            cache.set_json(K_POSTURE, state.posture)
        if state.mode and cache.get_json(K_MODE) is None:
            cache.set_json(K_MODE, state.mode.value)
        if state.session and cache.get_json(K_SESSION) is None:
            s = state.session
            cache.set_json(K_SESSION, {"session_id": s["session_id"], "opened_at": s["opened_at"]})
        return state

    def status(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "cache": self.rt.cache.kind,
            "durable_reads": self.misses,
            "stale": self.stale,
        }
