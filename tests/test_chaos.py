"""The chaos suite's CI subset: short, seeded versions of scripts/chaos.py's scenarios,
each ending in the ledger audit, on real PostgreSQL and Redis.

`python scripts/chaos.py` runs the full suite (the figures in README.md); these run the
same code with a few kills and outages each (`pytest -m chaos` selects them), so a change
that loses a fill or sends an order twice fails CI, not only the nightly table.
"""

from __future__ import annotations

import random
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from tcp_proxy import TcpProxy, proxied_dsn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import chaos  # noqa: E402
from chaos_replay import run_replay  # noqa: E402

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SEED = 11
SHORT = {"warm_s": 3.0, "down_s": (1.5, 2.5), "gap_s": (1.5, 2.0), "settle_s": 2.0}


def rng(salt: int = 0) -> random.Random:
    return random.Random(SEED * 1000 + salt)


def desk(tmp_path: Path, pg_dsn: str, redis_prefix: tuple[str, str]) -> chaos.Desk:
    url, prefix = redis_prefix
    return chaos.Desk(tmp_path, pg_dsn, url, prefix)


def clean(result: chaos.Result, *, known_unclean_stop: bool = False) -> None:
    """The audit found nothing and every run stopped as it should.

    `known_unclean_stop`: after a PostgreSQL freeze the store may still overrun its stop
    timeout (chaos finding C3, open); that alone marks the test xfail, while any audit
    violation still fails it."""
    problems = result.problems
    if known_unclean_stop:
        problems = [p for p in problems if not p.startswith("stop:")]
    assert problems == [], "\n".join(chaos.summary(problems))
    if result.problems:
        pytest.xfail("chaos finding C3: " + "; ".join(result.problems)[:300])


def test_proxy_freeze_holds_the_bytes_until_restored(redis_prefix: tuple[str, str]) -> None:
    """The black hole the outage scenarios use: nothing passes while frozen, nothing is lost."""
    url, _prefix = redis_prefix
    u = urlparse(url)
    proxy = TcpProxy(u.hostname or "127.0.0.1", u.port or 6379)
    try:
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        conn.sendall(b"PING\r\n")
        assert conn.recv(64) == b"+PONG\r\n"
        proxy.freeze()
        conn.settimeout(0.3)
        conn.sendall(b"PING\r\n")
        with pytest.raises(TimeoutError):
            conn.recv(64)
        with pytest.raises(TimeoutError):  # a new connection hangs too
            socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3).recv(1)
        proxy.restore()
        conn.settimeout(3)
        assert conn.recv(64) == b"+PONG\r\n"  # the held request went through after all
        conn.close()
    finally:
        proxy.close()


def test_kill_9_and_restart_on_postgres_keeps_the_books(
    tmp_path: Path, pg_dsn: str, redis_prefix: tuple[str, str]
) -> None:
    d = desk(tmp_path, pg_dsn, redis_prefix)
    r = chaos.Result("kill9", "pg")
    chaos.kill9(d, r, rng(1), 2, (1.5, 4.0), settle_s=2.0)
    assert r.kills == 2 and r.runs == 3
    assert r.orders > 0 and r.fills > 0
    clean(r)


def test_kill_9_with_the_default_broker_keeps_the_ledger_sound(
    tmp_path: Path, pg_dsn: str, redis_prefix: tuple[str, str]
) -> None:
    d = desk(tmp_path, pg_dsn, redis_prefix)
    d.durable_broker = False
    r = chaos.Result("kill9-default", "pg")
    chaos.kill9(d, r, rng(2), 2, (3.0, 5.0), settle_s=2.0)
    assert r.kills == 2 and r.orders > 0
    clean(r)


def test_postgres_cut_and_frozen_mid_run(
    tmp_path: Path, pg_dsn: str, redis_prefix: tuple[str, str]
) -> None:
    proxy, via = proxied_dsn(pg_dsn)
    try:
        d = desk(tmp_path, via, redis_prefix)
        r = chaos.Result("pg-outage", "pg")
        chaos.outages(d, r, rng(3), proxy, "pg", 2, **SHORT)
    finally:
        proxy.close()
    assert (r.pg_cut, r.pg_frozen) == (1, 1)
    assert r.orders > 0
    clean(r, known_unclean_stop=True)


def test_kill_9_while_postgres_is_down_then_restart_into_the_outage(
    tmp_path: Path, pg_dsn: str, redis_prefix: tuple[str, str]
) -> None:
    proxy, via = proxied_dsn(pg_dsn)
    try:
        d = desk(tmp_path, via, redis_prefix)
        r = chaos.Result("kill9-outage", "pg")
        chaos.kill9_in_outage(d, r, rng(7), proxy, 1)
    finally:
        proxy.close()
    assert (r.kills, r.pg_cut) == (1, 1)
    assert r.orders > 0
    clean(r, known_unclean_stop=True)


def test_redis_frozen_mid_run(tmp_path: Path, pg_dsn: str, redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    proxy, via = chaos.redis_proxy(url)
    try:
        d = chaos.Desk(tmp_path, pg_dsn, via, prefix)
        r = chaos.Result("redis-outage", "pg")
        chaos.outages(d, r, rng(6), proxy, "redis", 1, **SHORT)
    finally:
        proxy.close()
    assert r.redis_cut == 1
    assert r.orders > 0
    clean(r)


def test_actor_kills_during_a_replay(tmp_path: Path) -> None:
    found, figures = run_replay(tmp_path, rng(4), 120)
    assert figures["kills"] == 120
    assert figures["by_method"]["restart"] > 0 and figures["by_method"]["crash"] > 0
    assert figures["orders"] > 0 and figures["fills"] > 0
    assert figures["problems"] == []
    assert found == []


def test_sigterm_under_load_stops_without_a_late_order(
    tmp_path: Path, pg_dsn: str, redis_prefix: tuple[str, str]
) -> None:
    d = desk(tmp_path, pg_dsn, redis_prefix)
    r = chaos.Result("sigterm", "pg")
    chaos.sigterm(d, r, rng(5), 1, settle_s=2.0)
    assert r.sigterms == 1 and r.orders > 0
    clean(r)
