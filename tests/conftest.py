"""Shared fixtures: real PostgreSQL databases and Redis prefixes per test, a virtual clock,
a bounded condition wait (never a sleep), and a whole AEGIS tree on a virtual clock."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pykka
import pytest
import redis

from supervisors.clock import VirtualClock

PG_BASE = os.environ.get("AEGIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP_PG = os.environ.get("AEGIS_TEST_SKIP_PG") == "1"
REDIS_URL = os.environ.get("AEGIS_TEST_REDIS", "redis://127.0.0.1:6379/15")


def wait_until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll `pred` until truthy (returns its value) or fail after `timeout` real seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or pred}")
        time.sleep(0.005)


@pytest.fixture
def vclock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture(autouse=True)
def _no_leaked_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()
    for name in ("supervisors", "pykka"):  # undo logs.intercept_stdlib for caplog users
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True


@pytest.fixture(autouse=True)
def _stdlib_logging_restored() -> Iterator[None]:
    """A started app routes the `supervisors`/`pykka` loggers into loguru; undo it after
    each test so later tests' `caplog` still sees them."""
    yield
    for name in ("supervisors", "pykka"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
        lg.setLevel(logging.NOTSET)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg2.extensions.connection]:
    """Autocommit connection to the maintenance DB, used to create/drop test DBs."""
    try:
        conn = psycopg2.connect(PG_BASE, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        if SKIP_PG:
            pytest.skip(f"PostgreSQL unreachable and AEGIS_TEST_SKIP_PG=1: {exc}")
        pytest.fail(f"PostgreSQL unreachable at {PG_BASE} (set AEGIS_TEST_SKIP_PG=1): {exc}")
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def pg_dsn(pg_admin: psycopg2.extensions.connection) -> Iterator[str]:
    """A brand-new database per test, force-dropped afterwards."""
    name = f"aegis_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg2.extensions.make_dsn(PG_BASE, dbname=name)
    finally:
        with pg_admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(redis url, a unique key prefix); every key under the prefix is deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis unreachable at {REDIS_URL}: {exc}")
    prefix = f"aegis-test-{uuid.uuid4().hex[:10]}:"
    yield REDIS_URL, prefix
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def aegis_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with no AEGIS_* variables from the outer environment."""
    for key in list(os.environ):
        if key.startswith("AEGIS_") and not key.startswith("AEGIS_TEST"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def settle(timeout: float = 15.0) -> None:
    """Wait until every actor's mailbox is empty twice in a row (the tree is idle)."""
    quiet = 0
    deadline = time.monotonic() + timeout
    while quiet < 2:
        busy = any(not ref.actor_inbox.empty() for ref in pykka.ActorRegistry.get_all())
        quiet = 0 if busy else quiet + 1
        if time.monotonic() > deadline:
            pytest.fail("actors did not settle")
        time.sleep(0.002)


def drive(clock: VirtualClock, seconds: float, step: float = 0.25) -> None:
    """Advance virtual time in steps, letting the tree finish each step's work."""
    end = clock.now() + seconds
    while clock.now() < end - 1e-9:
        clock.advance(min(step, end - clock.now()))
        settle()


@pytest.fixture
def aegis_factory(aegis_env: Path, vclock: VirtualClock) -> Iterator[Callable[..., Any]]:
    """Start a whole AEGIS tree on the virtual clock, in a scratch directory.

    Keyword arguments are settings sections, e.g. `make(feed={"symbols": ["AAPL"]})`.
    """
    from aegis_actors.app import Aegis
    from aegis_actors.settings import load_settings

    apps: list[Aegis] = []

    def make(**sections: Any) -> Aegis:
        sections.setdefault("dashboard", {"port": 0})
        sections.setdefault("run", {"log_dir": str(aegis_env / "logs")})
        sections.setdefault("store", {"sqlite_path": str(aegis_env / "var" / "aegis.db")})
        app = Aegis(load_settings(None, **sections), clock=vclock, stderr=False)
        app.start()
        apps.append(app)
        settle()
        return app

    yield make
    for app in apps:
        app.stop("test over")
    for name in ("supervisors", "pykka"):  # undo logs.intercept_stdlib so caplog works again
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True


@pytest.fixture
def live_tree(aegis_env: Path) -> Iterator[Callable[..., Any]]:
    """Start a whole AEGIS tree on the wall clock (overload and batching are about real
    CPU time and real mailboxes), in a scratch directory; stopped after the test."""
    from aegis_actors.app import Aegis
    from aegis_actors.settings import load_settings

    apps: list[Aegis] = []

    def make(**sections: Any) -> Aegis:
        settings = load_settings(
            None,
            dashboard={"port": 0},
            run={"log_dir": str(aegis_env / "logs")},
            store={"sqlite_path": str(aegis_env / "var" / "aegis.db")},
            **sections,
        )
        app = Aegis(settings, stderr=False)
        app.start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop("test over")
