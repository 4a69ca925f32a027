"""The market websocket feed end to end: a whole AEGIS tree on a virtual clock, its
production client connected to an Alpaca-protocol server on 127.0.0.1.

Outages are cut at the server and measured in virtual time; each SPEC 4.2 tier's effect is
checked where a user would look: the status, the trading mode, the alerts, the contexts.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import drive, settle, wait_until
from feed_server import FeedServer, trade

from aegis_actors.messages import Action, Decision, GetStatus, OrderType, Posture
from aegis_actors.runtime import CONTEXT, EXECUTION, MARKET, POSTURE, WATCHDOG
from supervisors.clock import VirtualClock

KEY, SECRET = "AKTESTKEY123", "very-secret-value-42"


def status(app: Any, name: str) -> dict[str, Any]:
    result: dict[str, Any] = app.rt.directory.ask(name, GetStatus(), timeout=3.0)
    return result


def link(app: Any) -> dict[str, Any]:
    result: dict[str, Any] = status(app, MARKET)["link"]
    return result


def advance_until(
    clock: VirtualClock, pred: Callable[[], Any], step: float = 0.05, limit_s: float = 10.0
) -> float:
    """Advance virtual time in small steps until `pred` holds; the virtual seconds it took."""
    start = clock.now()
    while True:
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            if pred():
                return clock.now() - start
            time.sleep(0.005)
        if clock.now() - start >= limit_s:
            pytest.fail(f"not within {limit_s} virtual seconds")
        clock.advance(step)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer("alpaca", KEY, SECRET).start()
    yield srv
    srv.stop()


@pytest.fixture
def feed_app(
    aegis_factory: Callable[..., Any],
    server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    monkeypatch.setenv("AEGIS_FEED__KEY", KEY)
    monkeypatch.setenv("AEGIS_FEED__SECRET", SECRET)

    def make(**feed: Any) -> Any:
        cfg = {
            "kind": "alpaca",
            "url": server.url,
            "symbols": ["AAPL", "MSFT"],
            "reconnect_max_s": 0.25,
            **feed,
        }
        app = aegis_factory(feed=cfg)
        wait_until(lambda: server.ready >= 1, what="the client subscribed")
        return app

    return make


def send_trade(server: FeedServer, clock: VirtualClock, app: Any, symbol: str = "AAPL") -> None:
    before = status(app, MARKET)["ticks"]
    server.send([trade(symbol, 101.5, clock.now())])
    wait_until(lambda: status(app, MARKET)["ticks"] > before, what="the trade was taken")


def outage(server: FeedServer, clock: VirtualClock, app: Any, seconds: float) -> float:
    """Cut the feed for `seconds` of virtual time, restore it, and resume data; the silence."""
    send_trade(server, clock, app)
    start = clock.now()
    server.cut()
    wait_until(lambda: not link(app)["connected"], what="the client saw the drop")
    drive(clock, seconds, step=0.25)
    server.restore()
    advance_until(clock, lambda: link(app)["connected"] and server.ready >= 1)
    send_trade(server, clock, app)
    settle()
    return clock.now() - start


def tiers_taken(app: Any) -> list[str]:
    return [s["tier"] for s in status(app, MARKET)["tier_steps"]]


def feed_alerts(app: Any) -> list[dict[str, Any]]:
    return [a for a in status(app, WATCHDOG)["alerts"] if a["kind"] == "feed_tier"]


def test_alpaca_handshake_uses_env_keys_and_subscribes_the_symbols(
    feed_app: Callable[..., Any], server: FeedServer, vclock: VirtualClock, aegis_env: Path
) -> None:
    app = feed_app()
    assert server.auths == [{"action": "auth", "key": KEY, "secret": SECRET}]
    assert server.subscriptions[0]["trades"] == ["AAPL", "MSFT", "VIX"]
    server.send(
        [
            trade("AAPL", 190.25, vclock.now()),
            {"T": "q", "S": "MSFT", "bp": 410.0, "ap": 410.2, "bs": 1, "as": 2, "t": "x"},
            {
                "T": "b",
                "S": "MSFT",
                "o": 409.0,
                "h": 411,
                "l": 408,
                "c": 410.5,
                "v": 1200,
                "t": "2025-12-31T23:59:00Z",
            },
            trade("VIX", 27.5, vclock.now()),
        ]
    )
    wait_until(lambda: status(app, POSTURE)["vix"] == 27.5, what="the VIX reached the posture")
    settle()
    assert status(app, POSTURE)["posture"] == "defensive"  # VIX > 25 (SPEC 3)
    market = status(app, MARKET)
    assert market["ticks"] == 2  # AAPL trade, MSFT bar; the quote's "t" is no time
    assert market["bad_ticks"] == {"bad_timestamp": 1}
    assert status(app, EXECUTION)["positions"] == {}
    assert app.rt.cache.prices("MSFT")[-1] == (1767225600.0, 410.5)  # bar close, at its end
    log = (aegis_env / "logs" / "aegis.jsonl").read_text()
    assert SECRET not in log and KEY not in log


def test_wrong_keys_are_refused_counted_and_retried_without_leaking(
    aegis_factory: Callable[..., Any],
    server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
    vclock: VirtualClock,
    aegis_env: Path,
) -> None:
    monkeypatch.setenv("AEGIS_FEED__KEY", KEY)
    monkeypatch.setenv("AEGIS_FEED__SECRET", "wrong-secret-value")
    app = aegis_factory(feed={"kind": "alpaca", "url": server.url, "symbols": ["AAPL"]})
    wait_until(lambda: link(app)["failed"] >= 1, what="the refusal was counted")
    advance_until(vclock, lambda: link(app)["failed"] >= 2, step=0.1)
    assert server.ready == 0 and not link(app)["connected"]
    log = (aegis_env / "logs" / "aegis.jsonl").read_text()
    assert "auth failed" in log and "wrong-secret-value" not in log


def test_back_within_3s_nothing_happens(
    feed_app: Callable[..., Any], server: FeedServer, vclock: VirtualClock
) -> None:
    app = feed_app()
    silent = outage(server, vclock, app, 2.0)
    assert 2.0 <= silent < 3.0
    assert tiers_taken(app) == []
    assert feed_alerts(app) == []
    assert status(app, WATCHDOG)["mode"] == "normal"
    assert status(app, MARKET)["link"]["disconnects"] == 1


def test_3_to_10s_marks_contexts_stale_then_recovers(
    feed_app: Callable[..., Any], server: FeedServer, vclock: VirtualClock
) -> None:
    app = feed_app()
    send_trade(server, vclock, app)
    server.cut()
    wait_until(lambda: not link(app)["connected"])
    drive(vclock, 5.0, step=0.25)
    assert tiers_taken(app) == ["stale"]
    assert app.rt.cache.get_json("feed_state")["stale"] is True
    # the stale step entered as system events; their contexts were loaded as stale
    assert status(app, CONTEXT)["stale"] >= 2
    kinds = {e["kind"] for e in status(app, MARKET)["recent"]}
    assert "system" in kinds
    server.restore()
    advance_until(vclock, lambda: link(app)["connected"] and server.ready >= 1)
    send_trade(server, vclock, app)
    settle()
    assert tiers_taken(app) == ["stale", "ok"]
    assert app.rt.cache.get_json("feed_state")["stale"] is False
    assert [a["level"] for a in feed_alerts(app)] == ["warning", "info"]
    assert status(app, WATCHDOG)["mode"] == "normal"
    assert status(app, MARKET)["tier"] == "ok"


def test_over_10s_cancels_all_and_moves_to_safe(
    feed_app: Callable[..., Any], server: FeedServer, vclock: VirtualClock
) -> None:
    app = feed_app()
    send_trade(server, vclock, app)
    resting = Decision(  # a buy limit far under the market: it rests, open
        event_id="ev-resting",
        decision_id="dec-resting",
        symbol="AAPL",
        action=Action.BUY,
        size_fraction=1.0,
        order_type=OrderType.LIMIT,
        limit_price=80.0,
        confidence=0.9,
        posture=Posture.DEFENSIVE,
        reference_price=101.5,
    )
    app.rt.directory.tell(EXECUTION, resting)
    wait_until(lambda: status(app, EXECUTION)["open_orders"], what="the order resting")
    silent = outage(server, vclock, app, 12.0)
    assert silent > 12.0
    assert tiers_taken(app) == ["stale", "safe", "ok"]
    assert status(app, WATCHDOG)["mode"] == "safe"  # and stays there: only up by itself
    assert status(app, EXECUTION)["mode"] == "safe"
    assert status(app, EXECUTION)["open_orders"] == []  # cancelled at the safe step
    assert [a["level"] for a in feed_alerts(app)] == ["warning", "critical", "info"]
    assert not app.rt.shutdown.is_set()


def test_over_30s_shuts_down(
    feed_app: Callable[..., Any], server: FeedServer, vclock: VirtualClock
) -> None:
    app = feed_app()
    events: list[dict[str, Any]] = []
    app.rt.event_sinks.append(events.append)
    send_trade(server, vclock, app)
    server.cut()
    wait_until(lambda: not link(app)["connected"])
    drive(vclock, 35.0, step=0.5)
    assert tiers_taken(app) == ["stale", "safe", "shutdown"]
    assert status(app, WATCHDOG)["mode"] == "shutdown"
    assert app.rt.shutdown.is_set()
    tiers = [(e["tier"], e["silent_s"]) for e in events if e["type"] == "tier"]
    assert [t for t, _ in tiers] == ["stale", "safe", "shutdown"]
    assert 3.0 < tiers[0][1] <= 3.5 and 10.0 < tiers[1][1] <= 10.5 and 30 < tiers[2][1] <= 30.5


def test_primary_killed_switches_to_backup_within_5s(
    aegis_factory: Callable[..., Any],
    server: FeedServer,
    vclock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AEGIS_FEED__KEY", KEY)
    monkeypatch.setenv("AEGIS_FEED__SECRET", SECRET)
    backup = FeedServer("alpaca", KEY, SECRET).start()
    try:
        app = aegis_factory(
            feed={
                "kind": "alpaca",
                "url": server.url,
                "backup_url": backup.url,
                "symbols": ["AAPL", "MSFT"],
            }
        )
        wait_until(lambda: server.ready == 1, what="connected to the primary")
        assert link(app)["role"] == "primary"
        send_trade(server, vclock, app)
        server.kill()
        took = advance_until(vclock, lambda: link(app)["connected"] and backup.ready == 1)
        assert took < 5.0
        assert link(app)["role"] == "backup" and link(app)["failovers"] == 1
        send_trade(backup, vclock, app, "MSFT")
        assert tiers_taken(app) == []  # back within 3 s: nothing else happened
        alerts = status(app, WATCHDOG)["alerts"]
        assert any(a["kind"] == "feed_failover" for a in alerts)
    finally:
        backup.stop()


def test_a_quiet_market_on_a_live_link_is_kept_alive_by_pongs(
    feed_app: Callable[..., Any], server: FeedServer, vclock: VirtualClock
) -> None:
    app = feed_app(ping_every_s=2.0)
    send_trade(server, vclock, app)
    for _ in range(40):  # 20 virtual seconds without a print; each ping is answered
        vclock.advance(0.5)
        wait_until(lambda: status(app, MARKET)["silent_s"] < 2.6, what="a pong")
    assert tiers_taken(app) == []
    assert link(app)["connects"] == 1


class BlackHole:
    """Completes the websocket upgrade, then never reads or writes again (a dead peer)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            request = conn.recv(4096).decode()
            key = next(
                line.split(":", 1)[1].strip()
                for line in request.split("\r\n")
                if line.lower().startswith("sec-websocket-key")
            )
            accept = base64.b64encode(
                hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
            ).decode()
            conn.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


def test_a_peer_that_stops_answering_pings_is_dropped_and_redialled(
    aegis_factory: Callable[..., Any], vclock: VirtualClock
) -> None:
    hole = BlackHole()
    try:
        app = aegis_factory(
            feed={
                "kind": "json",
                "url": f"ws://127.0.0.1:{hole.port}/",
                "symbols": ["AAPL"],
                "ping_every_s": 2.0,
                "ping_timeout_s": 1.0,
            }
        )
        wait_until(lambda: link(app)["connected"], what="upgraded")
        took = advance_until(vclock, lambda: link(app)["disconnects"] >= 1, step=0.25)
        assert 3.0 <= took <= 3.75  # a ping at 2 s, unanswered for 1 s
        advance_until(vclock, lambda: len(hole.accepted) >= 2, step=0.1)
    finally:
        hole.close()


def test_a_reconnect_within_3s_counts_as_back_even_with_no_prints_after_it(
    feed_app: Callable[..., Any], server: FeedServer, vclock: VirtualClock
) -> None:
    app = feed_app()
    send_trade(server, vclock, app)
    server.cut()
    wait_until(lambda: not link(app)["connected"])
    drive(vclock, 2.0)
    server.restore()
    advance_until(vclock, lambda: link(app)["connected"] and server.ready >= 1)
    drive(vclock, 2.5)  # a quiet market: no print, no ping yet
    assert tiers_taken(app) == []
    assert status(app, MARKET)["silent_s"] <= 2.5
