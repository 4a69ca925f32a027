"""Economic calendar and news against a local HTTP server, on virtual time: events enter
the pipeline at the right moments, duplicates are ignored, and a release is never fired
twice across restarts (the last fired one is kept in the durable store)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import drive, settle
from feed_server import HttpJson

from aegis_actors.messages import GetStatus, RequestMode, TradingMode
from aegis_actors.runtime import CALENDAR, MARKET, NEWS, STORE, WATCHDOG
from supervisors.clock import VirtualClock

QUIET_FEED = {"symbols": ["AAPL", "MSFT", "NVDA"], "tick_interval_s": 1e6}


def status(app: Any, name: str) -> dict[str, Any]:
    result: dict[str, Any] = app.rt.directory.ask(name, GetStatus(), timeout=3.0)
    return result


def entered(app: Any, kind: str) -> list[dict[str, Any]]:
    """Events of `kind` the gateway sent into the pipeline, oldest first.

    Asking the calendar and news actors first waits out a poll or release still being
    handled (an idle mailbox is not an idle actor); what they told the market is then
    ahead of this ask in its mailbox."""
    status(app, CALENDAR)
    status(app, NEWS)
    return [e for e in status(app, MARKET)["recent"] if e["kind"] == kind]


@pytest.fixture
def http() -> Iterator[HttpJson]:
    srv = HttpJson().start()
    yield srv
    srv.stop()


def test_releases_enter_at_their_time_for_each_affected_symbol(
    aegis_factory: Callable[..., Any], http: HttpJson, vclock: VirtualClock
) -> None:
    t0 = vclock.now()
    http.docs["/calendar"] = [
        {"name": "CPI", "time": t0 + 10, "symbols": ["AAPL", "MSFT"], "importance": "high"},
        {"name": "FOMC", "time": t0 + 20, "symbols": ["SPY"]},  # no symbol of ours
        {"name": "NFP", "time": "2026-01-01T00:00:30Z", "symbols": "NVDA;AAPL"},
    ]
    app = aegis_factory(feed=QUIET_FEED, calendar={"url": http.url("/calendar")})
    assert status(app, CALENDAR)["scheduled"] == 2
    drive(vclock, 9.75)
    assert entered(app, "calendar") == []
    drive(vclock, 0.25)
    cpi = entered(app, "calendar")
    assert [(e["symbol"], e["headline"], e["ts"]) for e in cpi] == [
        ("AAPL", "CPI (high)", t0 + 10),
        ("MSFT", "CPI (high)", t0 + 10),
    ]
    drive(vclock, 20.0)
    nfp = entered(app, "calendar")[2:]
    assert [(e["symbol"], e["ts"]) for e in nfp] == [("NVDA", t0 + 30), ("AAPL", t0 + 30)]
    assert status(app, CALENDAR)["fired"] == 2


@pytest.mark.parametrize(
    "durable", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def test_missed_release_fires_once_after_restart_never_twice(
    aegis_factory: Callable[..., Any],
    http: HttpJson,
    vclock: VirtualClock,
    durable: str,
    request: pytest.FixtureRequest,
) -> None:
    if durable == "postgres":
        pg = {"postgres_dsn": request.getfixturevalue("pg_dsn")}
        aegis_factory = functools.partial(aegis_factory, store=pg)
    t0 = vclock.now()
    http.docs["/calendar"] = [
        {"name": "OLD", "time": t0 - 400, "symbols": ["AAPL"]},  # past catch_up_s: never
        {"name": "A", "time": t0 + 10, "symbols": ["AAPL"]},
        {"name": "B", "time": t0 + 20, "symbols": ["MSFT"]},
        {"name": "C", "time": t0 + 1000, "symbols": ["NVDA"]},
    ]
    cal = {"url": http.url("/calendar")}
    first = aegis_factory(feed=QUIET_FEED, calendar=cal)
    drive(vclock, 12.0)
    assert [e["headline"] for e in entered(first, "calendar")] == ["A (medium)"]
    first.stop("restart")
    vclock.advance(18.0)  # B falls due while nothing runs

    second = aegis_factory(feed=QUIET_FEED, calendar=cal)
    drive(vclock, 0.5)
    assert [(e["headline"], e["symbol"]) for e in entered(second, "calendar")] == [
        ("B (medium)", "MSFT")
    ]
    assert status(second, CALENDAR)["caught_up"] == 1
    assert status(second, STORE)["durable"] == durable
    second.stop("restart again")

    third = aegis_factory(feed=QUIET_FEED, calendar=cal)
    drive(vclock, 0.5)
    assert entered(third, "calendar") == []
    cal_status = status(third, CALENDAR)
    assert cal_status["scheduled"] == 1 and cal_status["caught_up"] == 0  # only C is ahead
    assert cal_status["last_fired"] == {"ts": t0 + 20, "names": ["B"]}


def test_news_polls_dedupes_and_maps_headlines_to_symbols(
    aegis_factory: Callable[..., Any], http: HttpJson, vclock: VirtualClock
) -> None:
    items = [
        {"id": "n1", "headline": "Apple unveils a new iPhone"},
        {"id": "n2", "headline": "Chip stocks rally as NVDA beats"},
        {"id": "n3", "headline": "Weather is nice today"},
        {"headline": "an item without an id"},
        {"id": "n1", "headline": "Apple unveils a new iPhone"},  # repeated in the same answer
    ]
    app = aegis_factory(
        feed=QUIET_FEED,
        news={"url": http.url("/news"), "poll_every_s": 5.0, "keywords": {"AAPL": ["apple"]}},
    )
    drive(vclock, 0.25)  # first poll: the endpoint is not there yet
    assert status(app, NEWS)["polls"] == 1
    assert http.hits == {"/news": 1}
    assert app.rt.metrics.errors.labels("news_poll")._value.get() == 1
    http.docs["/news"] = {"items": items}
    drive(vclock, 4.5)
    assert http.hits == {"/news": 1}
    drive(vclock, 0.5)
    assert status(app, NEWS)["polls"] == 2
    assert http.hits == {"/news": 2}
    news = entered(app, "news")
    assert [(e["symbol"], e["headline"]) for e in news] == [
        ("AAPL", "Apple unveils a new iPhone"),
        ("NVDA", "Chip stocks rally as NVDA beats"),
    ]
    http.docs["/news"] = {"items": [*items, {"id": "n4", "headline": "x", "symbols": ["MSFT"]}]}
    drive(vclock, 5.0)
    assert status(app, NEWS)["polls"] == 3
    assert http.hits == {"/news": 3}
    assert [e["symbol"] for e in entered(app, "news")] == ["AAPL", "NVDA", "MSFT"]
    assert status(app, NEWS)["emitted"] == 3
    assert app.rt.metrics.errors.labels("news_item")._value.get() == 2


def test_mode_changes_enter_as_system_events_for_every_symbol(
    aegis_factory: Callable[..., Any], vclock: VirtualClock
) -> None:
    app = aegis_factory(feed=QUIET_FEED)
    reply = app.rt.directory.ask(
        WATCHDOG,
        RequestMode(target=TradingMode.LIMITED, reason="operator test", operator=True),
        timeout=3.0,
    )
    assert reply.ok is True
    settle()
    system = entered(app, "system")
    assert sorted(e["symbol"] for e in system) == ["AAPL", "MSFT", "NVDA"]
    assert {e["headline"] for e in system} == {"trading mode normal -> limited: operator test"}
