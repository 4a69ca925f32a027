"""`check` as an operator relies on it: each item a real probe, good and bad, against the
fake broker, feed and LLM servers of the suite, real Redis and real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from conftest import REDIS_URL
from feed_server import FeedServer
from llm_fake import FakeLlm

from aegis_actors.brokers.alpaca_sim import AlpacaSim
from aegis_actors.checks import Item, Status, clock_item, run_checks
from aegis_actors.settings import load_settings
from aegis_actors.store import open_database

ROOT = Path(__file__).resolve().parents[1]


def items(aegis_env: Path, **sections: Any) -> dict[str, Item]:
    sections.setdefault("run", {"log_dir": str(aegis_env / "logs")})
    store = {"sqlite_path": str(aegis_env / "var" / "aegis.db")}
    store.update(sections.pop("store", {}))
    out = run_checks(load_settings(None, store=store, **sections))
    return {i.name: i for i in out}


@pytest.fixture
def sim() -> Iterator[AlpacaSim]:
    s = AlpacaSim(key_id="good-id", secret_key="good-secret").start()
    yield s
    s.stop()


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    f = FeedServer(key="feed-key", secret="feed-secret").start()
    yield f
    f.stop()


@pytest.fixture
def llm() -> Iterator[FakeLlm]:
    f = FakeLlm(api_key="sk-good")
    yield f
    f.close()


def test_broker_keys_valid_and_account_read(
    aegis_env: Path, sim: AlpacaSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_BROKER__KEY_ID", "good-id")
    monkeypatch.setenv("AEGIS_BROKER__SECRET_KEY", "good-secret")
    got = items(aegis_env, broker={"kind": "alpaca", "url": sim.url})
    assert got["broker account"].status is Status.PASS, got["broker account"]
    assert "equity 100,000.00" in got["broker account"].detail
    assert got["clock skew"].status is Status.PASS  # the sim's Date header is this clock
    assert ("GET", "/v2/account") in sim.requests


def test_bad_broker_keys_fail_naming_the_variables_never_the_values(
    aegis_env: Path, sim: AlpacaSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_BROKER__KEY_ID", "good-id")
    monkeypatch.setenv("AEGIS_BROKER__SECRET_KEY", "wrong-secret-value")
    got = items(aegis_env, broker={"kind": "alpaca", "url": sim.url})["broker account"]
    assert got.status is Status.FAIL
    assert "(403)" in got.detail and "AEGIS_BROKER__SECRET_KEY" in got.detail
    assert "wrong-secret-value" not in got.detail


def test_unreachable_broker_fails(aegis_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEGIS_BROKER__KEY_ID", "id")
    monkeypatch.setenv("AEGIS_BROKER__SECRET_KEY", "secret")
    got = items(aegis_env, broker={"kind": "alpaca", "url": "http://127.0.0.1:1"})
    assert got["broker account"].status is Status.FAIL
    assert "unreachable" in got["broker account"].detail


def test_missing_broker_keys_stop_check_at_the_settings(aegis_env: Path, sim: AlpacaSim) -> None:
    """Settings refuse an alpaca broker without keys before any probe (exit 2 on the CLI)."""
    from aegis_actors.settings import SettingsError

    with pytest.raises(SettingsError, match="AEGIS_BROKER__KEY_ID"):
        items(aegis_env, broker={"kind": "alpaca", "url": sim.url})


def test_clock_skew_against_the_broker_date() -> None:
    import time

    now = float(int(time.time()))  # an HTTP Date has whole seconds
    assert clock_item(formatdate(now, usegmt=True), now).status is Status.PASS
    assert clock_item(formatdate(now - 10, usegmt=True), now).status is Status.WARN
    late = clock_item(formatdate(now - 90, usegmt=True), now)
    assert late.status is Status.FAIL and "+90" in late.detail


def test_feed_keys_accepted_then_disconnected(
    aegis_env: Path, feed: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_FEED__KEY", "feed-key")
    monkeypatch.setenv("AEGIS_FEED__SECRET", "feed-secret")
    got = items(aegis_env, feed={"kind": "alpaca", "url": feed.url})["market data"]
    assert got.status is Status.PASS, got
    assert feed.auths == [{"action": "auth", "key": "feed-key", "secret": "feed-secret"}]


def test_feed_bad_keys_and_dead_backup_fail(
    aegis_env: Path, feed: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_FEED__KEY", "feed-key")
    monkeypatch.setenv("AEGIS_FEED__SECRET", "not-the-secret")
    got = items(
        aegis_env, feed={"kind": "alpaca", "url": feed.url, "backup_url": "ws://127.0.0.1:1"}
    )
    assert got["market data"].status is Status.FAIL
    assert "AEGIS_FEED__SECRET" in got["market data"].detail
    assert "not-the-secret" not in got["market data"].detail
    assert got["market data backup"].status is Status.FAIL


def test_llm_endpoint_and_backup_answer_with_the_shared_deepseek_key(
    aegis_env: Path, llm: FakeLlm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-good")
    backup = FakeLlm(api_key="sk-good")
    try:
        got = items(
            aegis_env,
            roles={"analyst": {"backend": "llm", "url": llm.url, "backup_url": backup.url}},
        )
        seen = [*llm.calls(), *backup.calls()]
    finally:
        backup.close()
    assert got["analyst API"].status is Status.PASS, got["analyst API"]
    assert got["analyst backup API"].status is Status.PASS
    assert [s.headers["authorization"] for s in seen] == ["Bearer sk-good"] * 2


def test_llm_bad_key_fails_naming_both_variables(
    aegis_env: Path, llm: FakeLlm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_ROLES__COMMANDER__API_KEY", "sk-wrong")
    got = items(
        aegis_env,
        roles={"commander": {"backend": "llm", "api": "anthropic", "url": llm.url}},
    )["commander API"]
    assert got.status is Status.FAIL
    assert "(401)" in got.detail
    assert "AEGIS_ROLES__COMMANDER__API_KEY or ANTHROPIC_API_KEY" in got.detail
    assert "sk-wrong" not in got.detail


def test_llm_dead_backup_fails(
    aegis_env: Path, llm: FakeLlm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-good")
    got = items(
        aegis_env,
        roles={"verifier": {"backend": "llm", "url": llm.url, "backup_url": "http://127.0.0.1:1"}},
    )
    assert got["verifier API"].status is Status.PASS
    assert got["verifier backup API"].status is Status.FAIL


def test_redis_writable_and_admin_secret(aegis_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = items(aegis_env, store={"redis_url": REDIS_URL})
    assert got["redis"].status is Status.PASS and "writable" in got["redis"].detail
    assert got["admin secret"].status is Status.FAIL  # Redis configured, no secret
    monkeypatch.setenv("AEGIS_ADMIN_SECRET", "s3cret")
    got = items(aegis_env, store={"redis_url": REDIS_URL})
    assert got["admin secret"].status is Status.PASS


def test_redis_unreachable_fails(aegis_env: Path) -> None:
    got = items(aegis_env, store={"redis_url": "redis://127.0.0.1:1/0"})
    assert got["redis"].status is Status.FAIL


def test_postgres_writable_and_schema_current(aegis_env: Path, pg_dsn: str) -> None:
    got = items(aegis_env, store={"postgres_dsn": pg_dsn})
    assert got["durable store"].status is Status.PASS
    assert got["schema version"].status is Status.WARN  # empty: the first start migrates
    open_database(postgres_dsn=pg_dsn).close()
    got = items(aegis_env, store={"postgres_dsn": pg_dsn})
    assert got["durable store"].detail == "postgres writable"
    assert got["schema version"].status is Status.PASS


def test_postgres_unreachable_fails(aegis_env: Path) -> None:
    got = items(aegis_env, store={"postgres_dsn": "postgresql://postgres@127.0.0.1:1/x"})
    assert got["durable store"].status is Status.FAIL


def test_unwritable_log_directory_fails(aegis_env: Path) -> None:
    (aegis_env / "afile").write_text("x")
    got = items(aegis_env, run={"log_dir": str(aegis_env / "afile" / "logs")})
    assert got["log directory"].status is Status.FAIL


def test_cli_json_and_exit_status(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "check", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    assert {i["name"] for i in doc["items"]} >= {"durable store", "broker account", "daily limits"}
    env.update(
        AEGIS_BROKER__KIND="alpaca",
        AEGIS_BROKER__URL="http://127.0.0.1:1",
        AEGIS_BROKER__KEY_ID="id",
        AEGIS_BROKER__SECRET_KEY="secret",
    )
    r = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert any(line.startswith("FAIL  broker account") for line in r.stdout.splitlines()), r.stdout


def test_daily_limits_warn_on_an_unlimited_llm_budget(aegis_env: Path) -> None:
    assert items(aegis_env)["daily limits"].status is Status.PASS
    got = items(
        aegis_env,
        roles={"analyst": {"backend": "llm", "url": "http://127.0.0.1:1", "daily_budget_usd": 0}},
    )["daily limits"]
    assert got.status is Status.WARN and "no daily LLM budget for analyst" in got.detail


def test_no_secret_and_no_url_password_in_any_line(
    aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_BROKER__KEY_ID", "id-1234")
    monkeypatch.setenv("AEGIS_BROKER__SECRET_KEY", "sec-5678")
    got = items(
        aegis_env,
        broker={"kind": "alpaca", "url": "http://user:pa55word@127.0.0.1:1"},
        store={"redis_url": "redis://:redispass@127.0.0.1:1/0"},
    )
    text = "\n".join(i.detail for i in got.values())
    for secret in ("id-1234", "sec-5678", "pa55word", "redispass"):
        assert secret not in text
    assert "://***@127.0.0.1:1" in got["broker account"].detail


def test_a_schema_newer_than_the_code_fails(aegis_env: Path) -> None:
    import sqlite3

    path = aegis_env / "var" / "aegis.db"
    open_database(sqlite_path=str(path)).close()
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)")
    got = items(aegis_env)["schema version"]
    assert got.status is Status.FAIL and "v99 is newer" in got.detail


def test_little_disk_space_warns_then_fails(
    aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from aegis_actors.checks import local

    free_mb = shutil.disk_usage(aegis_env).free / 1e6
    monkeypatch.setattr(local, "MIN_FREE_MB", free_mb * 10)  # "need" ten times what is free
    assert items(aegis_env)["log directory"].status is Status.WARN
    monkeypatch.setattr(local, "LOW_FREE_MB", free_mb * 5)
    got = items(aegis_env)["spool directory"]
    assert got.status is Status.FAIL and "MB free" in got.detail
