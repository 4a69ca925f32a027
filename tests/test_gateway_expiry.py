"""The market actor alone, between recording probes: the whole-cycle timeout frees a
symbol that never finished, and the event waiting for it goes next."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import settle, wait_until
from stand_ins import Recorder

from aegis_actors.gateway.market import MarketFeed
from aegis_actors.messages import EventDone, EventKind, MarketEvent, Outcome
from aegis_actors.runtime import CONTEXT, EXECUTION, MARKET, POSTURE, STORE, WATCHDOG, Runtime
from aegis_actors.settings import load_settings
from aegis_actors.tree import actor
from supervisors import Directory, Policy, start_tree
from supervisors.clock import VirtualClock


@pytest.fixture
def gateway(
    vclock: VirtualClock, aegis_env: Path
) -> Iterator[tuple[Directory, dict[str, list[Any]]]]:
    settings = load_settings(None, feed={"symbols": ["AAPL"], "tick_interval_s": 1e6})
    directory = Directory()
    rt = Runtime(settings=settings, clock=vclock, directory=directory)
    seen: dict[str, list[Any]] = {n: [] for n in (STORE, WATCHDOG, POSTURE, EXECUTION, CONTEXT)}
    children = [actor(n, Recorder, rt, seen[n]) for n in seen]
    root = start_tree(
        "t", [*children, actor(MARKET, MarketFeed, rt)], Policy(), clock=vclock, directory=directory
    )
    yield directory, seen
    root.stop(timeout=5)


def news(headline: str, ts: float) -> MarketEvent:
    return MarketEvent(
        event_id=f"ev-{headline}",
        kind=EventKind.NEWS,
        symbol="AAPL",
        ts=ts,
        headline=headline,
        source="news",
    )


def test_an_event_past_its_cycle_timeout_is_failed_and_the_next_one_goes(
    gateway: tuple[Directory, dict[str, list[Any]]], vclock: VirtualClock
) -> None:
    directory, seen = gateway
    t0 = vclock.now()
    directory.tell(MARKET, news("h1", t0))
    directory.tell(MARKET, news("h2", t0))
    wait_until(lambda: len(seen[CONTEXT]) == 1)
    vclock.advance(9.9)
    settle()
    assert [m.event_id for m in seen[CONTEXT]] == ["ev-h1"]
    assert not any(isinstance(m, EventDone) for m in seen[WATCHDOG])
    vclock.advance(0.1)
    wait_until(lambda: len(seen[CONTEXT]) == 2, what="the waiting event released")
    timeouts = [m for m in seen[WATCHDOG] if isinstance(m, EventDone)]
    assert [(m.event_id, m.outcome) for m in timeouts] == [("ev-h1", Outcome.TIMEOUT)]
    # h2 finishes in time: no second timeout when its deadline passes
    vclock.advance(2.0)
    directory.tell(MARKET, EventDone(event_id="ev-h2", symbol="AAPL", outcome=Outcome.HOLD))
    settle()
    vclock.advance(10.0)
    settle()
    # each event's end reaches the watchdog once, through the gateway
    ends = [(m.event_id, m.outcome) for m in seen[WATCHDOG] if isinstance(m, EventDone)]
    assert ends == [("ev-h1", Outcome.TIMEOUT), ("ev-h2", Outcome.HOLD)]
    # the late report of the timed-out event is not counted a second time
    directory.tell(MARKET, EventDone(event_id="ev-h1", symbol="AAPL", outcome=Outcome.HOLD))
    settle()
    assert len([m for m in seen[WATCHDOG] if isinstance(m, EventDone)]) == 2
    directory.tell(MARKET, news("h3", vclock.now()))
    wait_until(lambda: len(seen[CONTEXT]) == 3, what="the symbol is free again")
