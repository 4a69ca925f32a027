"""Bad input on the wire: every kind is counted by reason, none crashes the feed, and the
other symbols keep flowing; a flood from one symbol is coalesced (latest wins)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import settle, wait_until
from feed_server import FeedServer, trade

from aegis_actors.messages import GetStatus
from aegis_actors.runtime import MARKET
from supervisors.clock import VirtualClock


def market(app: Any) -> dict[str, Any]:
    result: dict[str, Any] = app.rt.directory.ask(MARKET, GetStatus(), timeout=3.0)
    return result


@pytest.fixture
def plain() -> Iterator[FeedServer]:
    srv = FeedServer("json").start()
    yield srv
    srv.stop()


def start(aegis_factory: Callable[..., Any], srv: FeedServer, kind: str) -> Any:
    app = aegis_factory(feed={"kind": kind, "url": srv.url, "symbols": ["AAPL", "MSFT", "NVDA"]})
    wait_until(lambda: srv.ready >= 1, what="the client connected")
    return app


def tick(symbol: Any, price: Any, ts: Any, volume: Any = 100) -> dict[str, Any]:
    return {"symbol": symbol, "price": price, "volume": volume, "ts": ts}


def test_bad_frames_and_ticks_are_counted_by_reason_and_never_crash(
    aegis_factory: Callable[..., Any], plain: FeedServer, vclock: VirtualClock, aegis_env: Path
) -> None:
    app = start(aegis_factory, plain, "json")
    now = vclock.now()
    plain.send_frames(
        [
            "this is not json",
            "42",
            json.dumps([1, "x"]),
            tick("AAPL", "abc", now),
            json.dumps(tick("AAPL", float("nan"), now)),  # NaN on the wire
            tick("AAPL", -3.5, now),
            tick("AAPL", 0, now),
            tick("MSFT", 10.0, now, volume=-5),
            tick("ZZZZ", 10.0, now),
            tick(None, 10.0, now),
            tick("AAPL", 100.0, now),
            tick("AAPL", 99.0, now - 10),  # older than the last AAPL print
            tick("AAPL", 99.0, now + 60),  # from the future
            tick("AAPL", 99.0, "yesterday"),
            tick("AAPL", True, now),
            [tick("MSFT", 410.0, now), tick("NVDA", 130.0, now)],  # an array frame
        ]
    )
    wait_until(lambda: market(app)["ticks"] == 3, what="the good prints")
    settle()
    m = market(app)
    assert m["bad_ticks"] == {
        "not_json": 1,
        "bad_frame": 1,
        "bad_item": 2,
        "bad_price": 5,
        "bad_volume": 1,
        "unknown_symbol": 2,
        "timestamp_backwards": 1,
        "future_timestamp": 1,
        "bad_timestamp": 1,
    }
    assert {e["symbol"] for e in m["recent"] if e["kind"] == "tick"} == {"AAPL", "MSFT", "NVDA"}
    assert app.rt.cache.prices("MSFT")[-1][1] == 410.0
    assert app.rt.cache.prices("AAPL")[-1][1] == 100.0
    assert app.rt.metrics.restarts.labels(MARKET)._value.get() == 0
    assert m["link"]["connects"] == 1  # the connection never dropped either
    log = (aegis_env / "logs" / "aegis.jsonl").read_text()
    assert log.count("dropped (not_json)") == 1
    metric = app.rt.metrics.bad_ticks.labels("bad_price")._value.get()
    assert metric == 5


def test_flood_from_one_symbol_is_coalesced_and_others_keep_flowing(
    aegis_factory: Callable[..., Any], plain: FeedServer, vclock: VirtualClock
) -> None:
    app = start(aegis_factory, plain, "json")
    t0 = vclock.now() - 100.0
    frames = []
    for f in range(50):
        items = [tick("AAPL", 100.0 + (f * 100 + i) / 1000, t0 + f + i / 1000) for i in range(100)]
        items.append(tick("MSFT" if f % 2 else "NVDA", 400.0 + f, t0 + f))
        frames.append(items)
    plain.send_frames(frames)
    wait_until(lambda: market(app)["ticks"] == 5050, what="every print taken")
    settle()
    m = market(app)
    assert m["bad_ticks"] == {}
    assert app.rt.cache.prices("AAPL")[-1][1] == pytest.approx(104.999)
    assert app.rt.cache.prices("MSFT")[-1][1] == 449.0
    assert app.rt.cache.prices("NVDA")[-1][1] == 448.0
    events = m["events"]
    assert events < 200  # 5,050 prints, a handful of events: the rest were coalesced
    assert m["coalesced"] > 0
    assert m["inflight"] <= 3 and m["waiting"] <= 3


def test_alpaca_error_and_unknown_messages_are_counted_and_data_flows_on(
    aegis_factory: Callable[..., Any], vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_FEED__KEY", "k")
    monkeypatch.setenv("AEGIS_FEED__SECRET", "s")
    srv = FeedServer("alpaca", "k", "s").start()
    try:
        app = start(aegis_factory, srv, "alpaca")
        now = vclock.now()
        srv.send_frames(
            [
                [{"T": "error", "code": 500, "msg": "internal error"}],
                [{"T": "x", "S": "AAPL"}, {"T": "q", "S": "AAPL", "bp": 10, "ap": 9, "t": "x"}],
                [{"T": "q", "S": "AAPL", "bp": "ten", "ap": 9}],
                [trade("NVDA", 131.0, now), trade("AAPL", float("inf"), now)],
            ]
        )
        wait_until(lambda: market(app)["ticks"] == 1, what="the NVDA trade")
        settle()
        m = market(app)
        assert m["feed_errors"] == 1
        assert m["bad_ticks"] == {
            "unknown_message": 1,
            "crossed_quote": 1,
            "bad_quote": 1,
            "bad_price": 1,
        }
        assert app.rt.cache.prices("NVDA")[-1][1] == 131.0
    finally:
        srv.stop()
