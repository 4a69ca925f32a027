"""SPEC 4.3 tier 2 through the actors: execution holds an order and the verifier actor
answers a ConfirmPrice from the feed's latest print in the cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from stand_ins import Recorder

from aegis_actors.cache import MemoryCache
from aegis_actors.messages import ConfirmPrice, PriceConfirmation
from aegis_actors.metrics import Metrics
from aegis_actors.roles.actors import Verifier
from aegis_actors.runtime import COMMANDER, EXECUTION, VERIFIER, Runtime
from aegis_actors.settings import Settings
from supervisors import ChildSpec, Directory, Policy, Strategy, start_tree
from supervisors.clock import VirtualClock
from tests.conftest import wait_until


@pytest.fixture
def verifier(vclock: VirtualClock) -> Iterator[tuple[Runtime, list[Any]]]:
    got: list[Any] = []
    directory = Directory()
    rt = Runtime(Settings(), vclock, directory, MemoryCache(), Metrics())
    specs = [
        ChildSpec(EXECUTION, lambda ctx: Recorder.start(ctx, rt, got)),
        ChildSpec(COMMANDER, lambda ctx: Recorder.start(ctx, rt, [])),
        ChildSpec(VERIFIER, lambda ctx: Verifier.start(ctx, rt)),
    ]
    handle = start_tree(
        "root", specs, Policy(strategy=Strategy.ONE_FOR_ONE), clock=vclock, directory=directory
    )
    yield rt, got
    handle.stop()


def ask(rt: Runtime, got: list[Any], rid: str, broker: float, feed: float) -> PriceConfirmation:
    rt.directory.tell(
        VERIFIER,
        ConfirmPrice(
            request_id=rid,
            symbol="AAPL",
            broker_price=broker,
            feed_price=feed,
            diff_pct=abs(broker - feed) / feed * 100,
            ts=rt.clock.now(),
        ),
    )
    found: list[PriceConfirmation] = wait_until(
        lambda: [m for m in got if isinstance(m, PriceConfirmation) and m.request_id == rid]
    )
    return found[0]


def test_verifier_confirms_against_a_fresh_feed(verifier: Any, vclock: VirtualClock) -> None:
    rt, got = verifier
    rt.cache.push_price("AAPL", 100.2, vclock.now())
    assert ask(rt, got, "r1", 101.0, 100.0).approve
    assert not ask(rt, got, "r2", 103.0, 100.0).approve  # over the halt line now
    vclock.advance(45.0)
    late = ask(rt, got, "r3", 101.0, 100.0)
    assert not late.approve and "old" in late.reason
