"""The cache backends behave the same (memory and real Redis), and Redis going away turns
reads into misses and comes back on the clock's backoff."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import redis
from tcp_proxy import TcpProxy

from aegis_actors.cache import Cache, MemoryCache
from aegis_actors.cache_redis import RedisCache, make_cache, redact_url
from aegis_actors.settings import load_settings
from supervisors.clock import VirtualClock


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def cache(request: pytest.FixtureRequest, vclock: VirtualClock) -> Iterator[Cache]:
    if request.param == "memory":
        yield MemoryCache(history=5)
        return
    url, prefix = request.getfixturevalue("redis_prefix")
    c = RedisCache(url, prefix=prefix, now=vclock.now, history=5)
    yield c
    c.close()


def test_price_history_is_bounded_newest_last_with_timestamps(cache: Cache) -> None:
    for i in range(8):
        cache.push_price("AAPL", 100.0 + i, 1000.0 + i)
    assert cache.prices("AAPL") == [(1000.0 + i, 100.0 + i) for i in range(3, 8)]
    assert cache.prices("AAPL", 2) == [(1006.0, 106.0), (1007.0, 107.0)]
    assert cache.prices("MSFT") == []


def test_latest_price_alone_is_the_history_tail(cache: Cache) -> None:
    """`prices(s, 1)` (read per event) is the last item of the whole history, from one
    print to a full, wrapped history."""
    assert cache.prices("AAPL", 1) == []
    for i in range(8):
        cache.push_price("AAPL", 100.0 + i, 1000.0 + i)
        assert cache.prices("AAPL", 1) == cache.prices("AAPL")[-1:] == [(1000.0 + i, 100.0 + i)]


@pytest.mark.parametrize("n", [-2, 0, 1, 3, 5, 9])
def test_price_series_is_the_history_split(cache: Cache, n: int) -> None:
    assert cache.price_series("AAPL", n) == ([], None)
    for i in range(8):
        cache.push_price("AAPL", 100.0 + i, 1000.0 + i)
    history = cache.prices("AAPL", n)
    assert cache.price_series("AAPL", n) == ([p for _, p in history], 1007.0)


def test_json_values_round_trip_and_delete(cache: Cache) -> None:
    assert cache.get_json("positions") is None
    cache.set_json("positions", {"AAPL": {"qty": 3.0, "avg_price": 101.5}})
    cache.set_json("mode", "limited")
    assert cache.get_json("positions") == {"AAPL": {"qty": 3.0, "avg_price": 101.5}}
    assert cache.get_json("mode") == "limited"
    assert cache.get_many(["mode", "nothing", "positions"]) == [
        "limited",
        None,
        {"AAPL": {"qty": 3.0, "avg_price": 101.5}},
    ]
    raw = cache.get_many_raw(["mode", "nothing", "positions"])
    assert raw[1] is None and [json.loads(r) for r in (raw[0], raw[2]) if r] == [
        "limited",
        {"AAPL": {"qty": 3.0, "avg_price": 101.5}},
    ]
    cache.delete("mode")
    assert cache.get_json("mode") is None


@pytest.mark.integration
def test_redis_keys_stay_under_the_prefix(
    redis_prefix: tuple[str, str], vclock: VirtualClock
) -> None:
    url, prefix = redis_prefix
    c = RedisCache(url, prefix=prefix, now=vclock.now)
    c.set_json("mode", "normal")
    c.push_price("AAPL", 1.0, 2.0)
    raw = redis.Redis.from_url(url)
    keys = sorted(k.decode() for k in raw.scan_iter(match=prefix + "*"))
    assert keys == [prefix + "kv:mode", prefix + "prices:AAPL"]
    c.close()


@pytest.mark.integration
def test_redis_down_means_misses_then_reconnect_on_backoff(
    redis_prefix: tuple[str, str], vclock: VirtualClock
) -> None:
    url, prefix = redis_prefix
    u = urlparse(url)
    proxy = TcpProxy(u.hostname or "127.0.0.1", u.port or 6379)
    errors: list[str] = []
    c = RedisCache(
        f"redis://127.0.0.1:{proxy.port}{u.path}",
        prefix=prefix,
        now=vclock.now,
        backoff_initial_s=1.0,
        backoff_max_s=4.0,
        on_error=errors.append,
    )
    try:
        c.set_json("positions", {"AAPL": {"qty": 1}})
        assert c.get_json("positions") == {"AAPL": {"qty": 1}}
        proxy.cut()
        assert c.get_json("positions") is None  # a miss: the caller goes to the durable store
        assert not c.up and errors == ["cache_unavailable"]
        c.set_json("positions", {"AAPL": {"qty": 2}})  # dropped, counted
        assert c.dropped == 1
        proxy.restore()
        # Not retried before the backoff has run out on the clock.
        assert c.get_json("positions") is None and not c.up
        c.push_price("AAPL", 1.0, 2.0)
        vclock.advance(1.0)
        # Back: the value set while it was down replaces the stale one, history is reset.
        assert c.get_json("positions") == {"AAPL": {"qty": 2}}
        assert c.up and c.reconnects == 1
        assert c.prices("AAPL") == []
        c.set_json("positions", {"AAPL": {"qty": 3}})
        assert c.get_json("positions") == {"AAPL": {"qty": 3}}
    finally:
        c.close()
        proxy.close()


@pytest.mark.integration
def test_backoff_doubles_while_redis_stays_down(
    redis_prefix: tuple[str, str], vclock: VirtualClock
) -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    proxy.cut()
    c = RedisCache(
        f"redis://127.0.0.1:{proxy.port}/15",
        prefix=redis_prefix[1],
        now=vclock.now,
        backoff_initial_s=1.0,
        backoff_max_s=4.0,
    )
    c.get_json("x")
    attempts = [c.failures]
    for _ in range(8):
        vclock.advance(1.0)
        c.get_json("x")
        attempts.append(c.failures)
    # Failures at t=0, 1, 3 (after 2 s), 7 (after 4 s, the cap): not on every call.
    assert attempts == [1, 2, 2, 3, 3, 3, 3, 4, 4]
    c.close()
    proxy.close()


def test_settings_choose_the_cache(vclock: VirtualClock) -> None:
    assert make_cache(load_settings(None), vclock.now, print).kind == "memory"
    s = load_settings(None, store={"redis_url": "redis://127.0.0.1:6379/15", "redis_prefix": "p:"})
    c = make_cache(s, vclock.now, print)
    assert c.kind == "redis" and c.prefix == "p:"
    assert redact_url("redis://u:secret@h:1/0") == "redis://u:***@h:1/0"
