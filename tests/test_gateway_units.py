"""The gateway's pure parts: wire decoding, the tier ladder, the intake, backoff, settings."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from aegis_actors.gateway.calendar import load_releases
from aegis_actors.gateway.intake import Intake, PendingTick
from aegis_actors.gateway.protocols import alpaca_item, decode_frame, parse_ts, plain_item
from aegis_actors.gateway.tiers import NetworkTiers
from aegis_actors.gateway.ws_feed import ClientConfig, backoff_delay
from aegis_actors.messages import EventKind, MarketEvent
from aegis_actors.settings import SettingsError, load_settings
from aegis_actors.tree import check_supported


def test_parse_ts_reads_rfc3339_with_nanoseconds_offsets_and_numbers() -> None:
    assert parse_ts("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_ts("2026-01-01T00:00:01.5Z") == 1767225601.5
    assert parse_ts("2026-01-01T00:00:01.123456789Z") == pytest.approx(1767225601.123456789)
    assert parse_ts("2026-01-01T01:00:00+01:00") == 1767225600.0
    assert parse_ts(1767225600) == 1767225600.0
    for bad in ("yesterday", "2026-13-01T00:00:00Z", None, True, "2026-01-01T00:00:00.xZ"):
        assert parse_ts(bad) is None


def test_alpaca_messages_decode_to_prints_controls_or_reasons() -> None:
    t = alpaca_item({"T": "t", "S": "AAPL", "p": 10.5, "s": 3, "t": "2026-01-01T00:00:00Z"})
    assert t == ("print", "AAPL", 10.5, 3, 1767225600.0, None)
    q = alpaca_item({"T": "q", "S": "AAPL", "bp": 10.0, "ap": 10.2, "t": "2026-01-01T00:00:00Z"})
    assert q[:3] == ("print", "AAPL", pytest.approx(10.1))
    b = alpaca_item({"T": "b", "S": "AAPL", "o": 9, "c": 10, "v": 5, "t": "2026-01-01T00:00:00Z"})
    assert b == ("print", "AAPL", 10, 5, 1767225660.0, 9)  # priced as of the bar's close
    assert alpaca_item({"T": "q", "bp": math.nan, "ap": 1})[:2] == ("bad", "bad_quote")
    assert alpaca_item({"T": "subscription", "trades": []})[:2] == ("control", "subscription")
    assert alpaca_item({"T": "zz"})[:2] == ("bad", "unknown_message")
    assert alpaca_item([1])[:2] == ("bad", "bad_item")
    assert plain_item({"symbol": "A", "price": 1, "ts": 5})[:5] == ("print", "A", 1, 0, 5.0)
    assert decode_frame(b"[{") == "not_json"
    assert decode_frame("null") == "bad_frame"
    assert decode_frame('{"a": 1}') == [{"a": 1}]


def test_tiers_climb_in_order_even_on_a_coarse_check_and_come_back_in_one_step() -> None:
    tiers = NetworkTiers(3.0, 10.0, 30.0)
    assert tiers.check(2.9) == [] and tiers.check(3.0) == []
    assert [s.name for s in tiers.check(12.0)] == ["stale", "safe"]
    assert tiers.check(20.0) == []
    back = tiers.data_back(21.0)
    assert back is not None and back.name == "ok" and tiers.tier == 0
    assert tiers.data_back(1.0) is None
    assert [s.name for s in tiers.check(31.0)] == ["stale", "safe", "shutdown"]


def test_intake_keeps_one_in_flight_latest_tick_wins_and_a_headline_is_not_lost() -> None:
    intake = Intake()
    assert intake.offer("A", PendingTick("A", 1.0, 1.0, 1.0)) is True
    intake.admit("A", "e1")
    assert intake.offer("A", PendingTick("A", 2.0, 1.0, 2.0)) is False
    assert intake.offer("A", PendingTick("A", 3.0, 1.0, 3.0)) is False
    news = MarketEvent(event_id="e9", kind=EventKind.NEWS, symbol="A", ts=3.0, headline="h")
    assert intake.offer("A", news) is False
    assert intake.offer("A", PendingTick("A", 4.0, 1.0, 4.0)) is False  # headline stays
    assert intake.coalesced == 3
    assert intake.done("A", "other") is False  # a late report changes nothing
    assert intake.done("A", "e1") is True
    assert intake.next(4.0) is news
    assert intake.offer("A", PendingTick("A", 5.0, 1.0, 5.0)) is True


def test_intake_window_holds_free_symbols_in_order_and_sheds_stale_ticks() -> None:
    """Past the in-flight window, intake waits (arrival order) instead of dispatching;
    a tick that waited past max_wait_s is shed and counted, a headline never is."""
    intake = Intake(window=2, max_wait_s=0.1)
    for n, sym in enumerate("AB"):
        assert intake.offer(sym, PendingTick(sym, 1.0, 1.0, 1.0), now=0.0) is True
        intake.admit(sym, f"e{n}")
    c_tick = PendingTick("C", 1.0, 1.0, 1.0)
    news = MarketEvent(event_id="n1", kind=EventKind.NEWS, symbol="D", ts=1.0, headline="h")
    e_tick = PendingTick("E", 1.0, 1.0, 1.0)
    assert intake.offer("C", c_tick, now=0.0) is False  # window full
    assert intake.offer("D", news, now=0.0) is False
    assert intake.offer("E", e_tick, now=0.15) is False
    assert intake.next(0.2) is None  # still full
    assert intake.done("A", "e0", 0.2) and intake.done("B", "e1", 0.2)
    # C waited 0.2 s (> 0.1): shed; the headline goes whatever its age; E is fresh enough
    assert intake.next(0.2) is news
    intake.admit("D", "n1")
    assert intake.next(0.2) is e_tick
    intake.admit("E", "e2")
    assert intake.next(0.2) is None
    assert intake.shed == {"stale": 1}
    assert intake.offer("F", PendingTick("F", 1.0, 1.0, 1.0), now=0.3) is False  # full again
    # waiting behind its own symbol's event is not waiting for the window: never stale
    assert intake.offer("D", PendingTick("D", 2.0, 1.0, 2.0), now=0.3) is False
    assert intake.done("D", "n1", 5.0) and intake.next(5.0) is not None


def test_backoff_doubles_caps_and_jitters() -> None:
    cfg = ClientConfig(
        urls=["ws://x"],
        protocol="json",
        reconnect_initial_s=0.1,
        reconnect_max_s=1.0,
        reconnect_jitter=0.2,
    )
    rng = random.Random(1)
    delays = [backoff_delay(n, cfg, rng) for n in range(1, 8)]
    assert 0.08 <= delays[0] <= 0.12 and 0.16 <= delays[1] <= 0.24
    assert all(0.8 <= d <= 1.2 for d in delays[4:])
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jittered, not in lockstep


def test_websocket_feeds_need_ws_urls(aegis_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_FEED__KEY", "k")
    monkeypatch.setenv("AEGIS_FEED__SECRET", "s")
    check_supported(load_settings(None, feed={"kind": "json", "url": "ws://127.0.0.1:1/x"}))
    with pytest.raises(SettingsError, match="feed.url"):
        check_supported(load_settings(None, feed={"kind": "alpaca", "url": ""}))
    with pytest.raises(SettingsError, match="feed.backup_url"):
        check_supported(
            load_settings(None, feed={"kind": "json", "url": "ws://a", "backup_url": "http://b"})
        )
    with pytest.raises(SettingsError, match="feed.kind"):
        check_supported(load_settings(None, feed={"kind": "replay"}))
    with pytest.raises(SettingsError, match="stale_after_s"):
        load_settings(None, feed={"safe_after_s": 50.0})


def test_calendar_files_load_from_csv_and_json(tmp_path: Path) -> None:
    csv_file = tmp_path / "releases.csv"
    csv_file.write_text(
        "name,time,symbols,importance\n"
        "CPI,2026-01-02T13:30:00Z,AAPL;MSFT,high\n"
        "GDP,1767360000,SPY,medium\n"
        "BAD,next tuesday,SPY,high\n"
    )
    releases = load_releases(file=str(csv_file))
    assert [(r.name, r.ts, r.symbols, r.importance) for r in releases] == [
        ("CPI", 1767360600.0, ("AAPL", "MSFT"), "high"),
        ("GDP", 1767360000.0, ("SPY",), "medium"),
    ]
    json_file = tmp_path / "releases.json"
    json_file.write_text('[{"name": "NFP", "time": 1767360000, "symbols": ["AAPL"]}]')
    assert load_releases(file=str(json_file))[0].symbols == ("AAPL",)
