"""Context injection, on the memory cache and on real Redis: cache first, the durable store
on a miss (which warms the cache), and prices older than 30 s marked stale."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from aegis_actors.base import AegisActor
from aegis_actors.cache import MemoryCache
from aegis_actors.cache_redis import RedisCache
from aegis_actors.context import ContextLoader
from aegis_actors.messages import (
    Context,
    GetStatus,
    MarketEvent,
    ModeChange,
    PositionUpdate,
    Posture,
    PostureChange,
    PostureParams,
    SessionSave,
    TradingMode,
)
from aegis_actors.runtime import ANALYST, COMMANDER, CONTEXT, STORE, VERIFIER, Runtime
from aegis_actors.settings import load_settings
from aegis_actors.store.actor import Store
from aegis_actors.tree import actor
from supervisors import Directory, Policy, start_tree
from supervisors.clock import VirtualClock

SEEN: list[Context] = []


class Capture(AegisActor):
    def on_Context(self, ctx: Context) -> None:
        if self.name == COMMANDER:
            SEEN.append(ctx)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def tree(
    request: pytest.FixtureRequest, aegis_env: Path, vclock: VirtualClock
) -> Iterator[Runtime]:
    SEEN.clear()
    settings = load_settings(
        None,
        store={
            "sqlite_path": str(aegis_env / "var" / "aegis.db"),
            "spool_path": str(aegis_env / "var" / "spool.db"),
        },
        run={"log_dir": str(aegis_env / "logs")},
    )
    rt = Runtime(settings=settings, clock=vclock, directory=Directory())
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_prefix")
        rt.cache = RedisCache(url, prefix=prefix, now=vclock.now)
    else:
        rt.cache = MemoryCache()
    root = start_tree(
        "root",
        [
            actor(STORE, Store, rt),
            actor(ANALYST, Capture, rt),
            actor(VERIFIER, Capture, rt),
            actor(COMMANDER, Capture, rt),
            actor(CONTEXT, ContextLoader, rt),
        ],
        Policy(),
        clock=vclock,
        directory=rt.directory,
    )
    yield rt
    root.stop(timeout=5)


def event(rt: Runtime, symbol: str, price: float) -> Context:
    n = len(SEEN)
    now = rt.clock.now()
    rt.directory.tell(CONTEXT, MarketEvent(event_id=f"ev-{n}", symbol=symbol, price=price, ts=now))
    wait_until(lambda: len(SEEN) > n, what="context")
    return SEEN[-1]


def durable_reads(rt: Runtime) -> int:
    return int(rt.directory.ask(CONTEXT, GetStatus(), 5.0)["durable_reads"])


def seed_durable(rt: Runtime, now: float) -> None:
    tell: Callable[[Any], bool] = lambda m: rt.directory.tell(STORE, m)  # noqa: E731
    tell(PositionUpdate(symbol="AAPL", qty=7.0, avg_price=101.0, ts=now, opened_at=now - 60))
    tell(ModeChange(old=TradingMode.NORMAL, new=TradingMode.LIMITED, reason="test", ts=now))
    params = PostureParams(
        entry_size=0.015, stop_loss=-0.008, take_profit=0.018, max_positions=2, limit_ratio=1.0
    )
    tell(
        PostureChange(
            old=Posture.GUERRILLA, new=Posture.DEFENSIVE, reason="test", params=params, ts=now
        )
    )
    tell(SessionSave(session_id="ss-durable", opened_at=now - 30, state={}, ts=now))


def test_miss_reads_the_durable_store_and_warms_the_cache(
    tree: Runtime, vclock: VirtualClock
) -> None:
    rt = tree
    seed_durable(rt, vclock.now())
    ctx = event(rt, "AAPL", 102.0)
    assert ctx.position is not None and ctx.position.qty == 7.0
    assert ctx.posture is Posture.DEFENSIVE and ctx.params.max_positions == 2
    assert ctx.mode is TradingMode.LIMITED
    assert ctx.session_id == "ss-durable"
    assert durable_reads(rt) == 1
    assert rt.cache.get_json("positions")["AAPL"]["qty"] == 7.0
    again = event(rt, "AAPL", 102.5)
    assert again.position is not None and again.mode is TradingMode.LIMITED
    assert durable_reads(rt) == 1  # served from the warmed cache


def test_prices_carry_their_age_and_go_stale_after_30s(tree: Runtime, vclock: VirtualClock) -> None:
    rt = tree
    t0 = vclock.now()
    for i in range(3):
        rt.cache.push_price("MSFT", 200.0 + i, t0 + i)
    vclock.advance(12.0)
    fresh = event(rt, "MSFT", 203.0)
    assert fresh.prices == [200.0, 201.0, 202.0]
    assert fresh.price_age_s == pytest.approx(10.0) and fresh.stale is False
    vclock.advance(21.0)
    stale = event(rt, "MSFT", 203.0)
    assert stale.price_age_s == pytest.approx(31.0) and stale.stale is True


def test_each_changed_document_is_seen_by_the_next_event(
    tree: Runtime, vclock: VirtualClock
) -> None:
    """The loader keeps what it worked out from the shared documents while their text is
    unchanged: a change to any one of them (and to a symbol's position) is in the next
    context, and an unchanged one is read the same."""
    rt = tree
    now = vclock.now()
    params = {
        "entry_size": 0.02,
        "stop_loss": -0.01,
        "take_profit": 0.02,
        "max_positions": 4,
        "limit_ratio": 0.5,
    }
    aapl = {"symbol": "AAPL", "qty": 5.0, "avg_price": 100.0}
    rt.cache.set_json("positions", {"AAPL": aapl})
    rt.cache.set_json("posture", {"posture": "offensive", "params": params})
    rt.cache.set_json("mode", "normal")
    rt.cache.set_json("session", {"session_id": "ss-1", "opened_at": now})
    rt.cache.set_json("account", {"equity": 12_345.0, "cash": 1.0})
    rt.cache.push_price("AAPL", 101.0, now)
    first = event(rt, "AAPL", 101.0)
    assert first.position is not None and first.position.qty == 5.0
    assert first.posture is Posture.OFFENSIVE and first.params.max_positions == 4
    assert (first.mode, first.session_id, first.capital) == (TradingMode.NORMAL, "ss-1", 12_345.0)
    assert first.open_positions == 1 and first.stale is False
    assert event(rt, "MSFT", 50.0).position is None
    same = event(rt, "AAPL", 101.0)
    assert same.position == first.position and same.params == first.params
    rt.cache.set_json(
        "positions", {"AAPL": {**aapl, "qty": 9.0}, "MSFT": {**aapl, "symbol": "MSFT"}}
    )
    moved = event(rt, "AAPL", 101.0)
    assert moved.position is not None and moved.position.qty == 9.0 and moved.open_positions == 2
    msft = event(rt, "MSFT", 50.0)
    assert msft.position is not None and msft.position.symbol == "MSFT"
    rt.cache.set_json("posture", {"posture": "defensive", "params": {**params, "max_positions": 1}})
    rt.cache.set_json("mode", "limited")
    rt.cache.set_json("session", {"session_id": "ss-2", "opened_at": now})
    rt.cache.set_json("account", {"equity": 999.0, "cash": 1.0})
    later = event(rt, "AAPL", 101.0)
    assert later.posture is Posture.DEFENSIVE and later.params.max_positions == 1
    assert (later.mode, later.session_id, later.capital) == (TradingMode.LIMITED, "ss-2", 999.0)
    rt.cache.set_json("feed_state", {"tier": 1, "stale": True, "since": now - 5.0})
    vclock.advance(2.0)
    quiet = event(rt, "AAPL", 101.0)
    assert quiet.stale is True and quiet.price_age_s == pytest.approx(7.0)
