"""A saturated AI role: our own queue is never read as the API failing, and the gateway
holds new events back (counted) instead of letting them fail. Real HTTP to fake LLM
servers on 127.0.0.1, the whole tree on a virtual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_fake import FakeLlm, Step
from roles_harness import Rig, llm_roles, make_rig

from aegis_actors.app import Aegis
from aegis_actors.messages import T0, GetStatus, MarketEvent
from aegis_actors.runtime import CONTEXT, MARKET
from supervisors.clock import VirtualClock

SYMBOLS = [f"S{i:02d}" for i in range(16)]


@pytest.fixture
def servers(vclock: VirtualClock) -> Iterator[list[FakeLlm]]:
    made = [
        FakeLlm(clock=vclock, default_latency={"analyst": 2.0, "verifier": 1.5, "commander": 1.0}),
        FakeLlm(clock=vclock),
    ]
    yield made
    for s in made:
        s.close()


@pytest.fixture
def rig(
    aegis_factory: Callable[..., Aegis],
    aegis_env: Path,
    vclock: VirtualClock,
    servers: list[FakeLlm],
) -> Callable[..., Rig]:
    def make(analyst: dict[str, Any]) -> Rig:
        primary, backup = servers
        cfg = llm_roles(primary.url, backup.url, analyst=analyst)
        return make_rig(
            aegis_factory,
            aegis_env,
            vclock,
            servers,
            cfg,
            feed={"symbols": SYMBOLS, "tick_interval_s": 1e6},
        )

    return make


def history(r: Rig, symbol: str) -> None:
    now = r.clock.now()
    for i in range(30):
        r.rt.cache.push_price(symbol, 100.0 * (1 + 0.0005 * (i - 30)), now - 30 + i)


def straight_to_context(r: Rig, symbol: str, n: int) -> None:
    """An event that skips the gateway's admission (so nothing holds it back)."""
    history(r, symbol)
    now = r.clock.now()
    ev = MarketEvent(event_id=f"ev-{symbol}-{n}", symbol=symbol, price=100.0, ts=now)
    r.rt.directory.tell(CONTEXT, ev.stamp(T0, now))


def test_a_pool_saturated_by_slow_http_never_trips_the_api_tier(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    """One analyst worker, an API answering every call in 2 s (well inside its 5 s budget
    and its 2.5 s slow mark), three events every 2 s for 40 s: calls wait for the worker
    in our own pool past their budget. They fail as our overload; the API's outage tiers
    (30 s -> limited) and its slow-primary failover never move."""
    primary, backup = servers
    r = rig({"workers": 1, "max_pending": 100})
    n = 0
    for _ in range(20):
        for _ in range(3):
            straight_to_context(r, SYMBOLS[n % len(SYMBOLS)], n)
            n += 1
        r.drive(2.0, step=0.25)
    assert r.mode() == "normal" and r.alerts("llm_api") == []
    analyst = r.role("analyst")
    assert analyst["api_down_since"] is None
    assert analyst["overloaded"] > 20  # the events did fail: the pool really was saturated
    assert analyst["saturated"] and analyst["saturations"] >= 1
    assert analyst["failovers"] == 0 and backup.calls("analyst") == []
    assert r.rt.metrics.value("aegis_errors_total", {"kind": "analyst_overloaded"}) > 20


def test_the_api_slow_within_budget_is_still_judged_slow(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    """The other side of the line: a call that was on the wire the whole budget is the
    API's failure (no worker shortage), so the tier clock starts."""
    primary, _backup = servers
    r = rig({"workers": 4, "failover_after_s": 5.0, "max_retries": 0})
    primary.script("analyst", Step(latency_s=6.0))
    straight_to_context(r, "S00", 0)
    r.drive(5.25, step=0.25)
    analyst = r.role("analyst")
    assert analyst["overloaded"] == 0 and analyst["api_down_since"] is not None


def test_gateway_closes_its_window_while_a_role_is_saturated_and_none_fails(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    """Eight analyst workers: once eight events are out the analyst says it is saturated
    and the gateway's window closes at eight; the ninth to twelfth events wait there
    (latest per symbol wins, the replaced ones counted), and the ticks among them that
    waited too long for the window are shed, counted, rather than failed. Every admitted
    event finishes; none fails, the mode stays normal, no forced posture."""
    r = rig({"workers": 8})
    for i in range(12):
        r.event(SYMBOLS[i])
        r.quiet()
    market = r.rt.directory.ask(MARKET, GetStatus(), 5.0)
    assert market["roles_saturated"].startswith("analyst 8/8"), market
    assert market["window"] == 8 and market["inflight"] == 8 and market["waiting"] == 4
    for i in range(8, 12):  # newer events for the waiting symbols replace the waiting ones
        r.event(SYMBOLS[i], price=101.0)
        r.quiet()
    r.drive(12.0, step=0.25)
    done = r.watchdog()["outcomes"]
    assert sum(done.values()) == 8, done
    assert not {"failed", "timeout"} & set(done), done
    shed = r.rt.metrics.value
    assert shed("aegis_events_shed_total", {"reason": "coalesced"}) == 4
    assert shed("aegis_events_shed_total", {"reason": "stale"}) == 4
    assert r.mode() == "normal" and r.posture() != "defensive"
    assert r.role("analyst")["saturated"] is False
    assert r.rt.directory.ask(MARKET, GetStatus(), 5.0)["roles_saturated"] is None
