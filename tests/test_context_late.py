"""A tick that reaches the context loader past its detect-to-analysis critical time is shed
there (counted by reason, its symbol freed), not failed: our own queueing is not a failed
event, and three failed in a row would force the posture defensive."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import settle, wait_until
from stand_ins import Recorder

from aegis_actors.context import ContextLoader
from aegis_actors.gateway.market import MarketFeed
from aegis_actors.messages import T0, Context, EventDone, EventKind, GetStatus, MarketEvent
from aegis_actors.runtime import (
    ANALYST,
    COMMANDER,
    CONTEXT,
    EXECUTION,
    MARKET,
    POSTURE,
    STORE,
    VERIFIER,
    WATCHDOG,
    Runtime,
)
from aegis_actors.settings import load_settings
from aegis_actors.tree import actor
from supervisors import Directory, Policy, start_tree
from supervisors.clock import VirtualClock


class BusyLoader(ContextLoader):
    """The real context loader behind a gate: an event waits in it while the clock moves
    on, as behind a busy thread."""

    gate = threading.Event()
    inside = threading.Event()

    def on_MarketEvent(self, event: MarketEvent) -> None:
        self.inside.set()
        self.gate.wait(10)
        super().on_MarketEvent(event)


@pytest.fixture
def tree(vclock: VirtualClock, aegis_env: Path) -> Iterator[tuple[Runtime, dict[str, list[Any]]]]:
    settings = load_settings(None, feed={"symbols": ["AAPL"], "tick_interval_s": 1e6})
    directory = Directory()
    rt = Runtime(settings=settings, clock=vclock, directory=directory)
    names = (STORE, WATCHDOG, POSTURE, EXECUTION, COMMANDER, ANALYST, VERIFIER)
    seen: dict[str, list[Any]] = {n: [] for n in names}
    children = [actor(n, Recorder, rt, seen[n]) for n in names]
    BusyLoader.gate.clear()
    BusyLoader.inside.clear()
    root = start_tree(
        "t",
        [*children, actor(CONTEXT, BusyLoader, rt), actor(MARKET, MarketFeed, rt)],
        Policy(),
        clock=vclock,
        directory=directory,
    )
    yield rt, seen
    BusyLoader.gate.set()
    root.stop(timeout=5)


def event(n: int, t: float, kind: EventKind = EventKind.TICK) -> MarketEvent:
    return MarketEvent(
        event_id=f"ev-{n}",
        kind=kind,
        symbol="AAPL",
        price=100.0,
        ts=t,
        headline="h" if kind is not EventKind.TICK else "",
        stamps={T0: t},
    )


def contexts(seen: dict[str, list[Any]], name: str) -> list[str]:
    return [m.event_id for m in seen[name] if isinstance(m, Context)]


def test_a_tick_late_at_the_context_loader_is_shed_and_its_symbol_freed(
    tree: tuple[Runtime, dict[str, list[Any]]], vclock: VirtualClock
) -> None:
    rt, seen = tree
    rt.directory.tell(MARKET, event(1, vclock.now()))
    wait_until(BusyLoader.inside.is_set, what="the tick at the context loader")
    vclock.advance(0.25)  # past detect-to-analysis critical (200 ms) while it waited
    BusyLoader.gate.set()
    wait_until(
        lambda: rt.directory.ask(MARKET, GetStatus(), 5.0)["shed"] == {"late": 1},
        what="the late tick shed at the gateway's count",
    )
    settle()
    assert contexts(seen, COMMANDER) == [] and contexts(seen, ANALYST) == []
    assert not any(isinstance(m, EventDone) for m in seen[WATCHDOG])  # not failed
    assert rt.metrics.value("aegis_events_shed_total", {"reason": "late"}) == 1
    gateway = rt.directory.ask(MARKET, GetStatus(), 5.0)
    assert gateway["inflight"] == 0
    # the symbol is free: its next tick goes in and reaches the roles
    rt.directory.tell(MARKET, event(2, vclock.now()))
    wait_until(lambda: contexts(seen, COMMANDER) == ["ev-2"], what="the next tick loaded")
    assert contexts(seen, ANALYST) == ["ev-2"]


def test_a_late_headline_is_loaded_not_shed(
    tree: tuple[Runtime, dict[str, list[Any]]], vclock: VirtualClock
) -> None:
    rt, seen = tree
    rt.directory.tell(MARKET, event(1, vclock.now(), EventKind.NEWS))
    wait_until(BusyLoader.inside.is_set, what="the headline at the context loader")
    vclock.advance(0.25)
    BusyLoader.gate.set()
    wait_until(lambda: contexts(seen, COMMANDER) == ["ev-1"], what="the headline loaded")
    assert rt.directory.ask(MARKET, GetStatus(), 5.0)["shed"] == {}
