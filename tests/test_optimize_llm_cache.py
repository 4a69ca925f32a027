"""LLM answers shared by every worker of a study, in real PostgreSQL or Redis: a second
worker process (another "machine") asking the same prompts pays for none of them, and two
workers missing the same prompt at once make one HTTP call between them."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from llm_fake import FakeLlm
from roles_harness import llm_roles
from test_backtest import trend_rows, write_csv
from test_optimize import env, optimize_cmd, trials_of

from aegis_actors.backtest.llm_cache import CachingClient, ResponseCache, RoleUsage
from aegis_actors.llm.client import Reply
from aegis_actors.llm.cost import Usage


def llm_settings(path: Path, url: str) -> Path:
    lines = []
    for role, cfg in llm_roles(url).items():
        lines.append(f"[roles.{role}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def fake() -> Any:
    server = FakeLlm()
    yield server
    server.close()


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_a_second_worker_pays_for_no_prompt_the_first_asked(
    kind: str, aegis_env: Path, fake: FakeLlm, request: pytest.FixtureRequest
) -> None:
    settings = llm_settings(aegis_env / "llm.toml", fake.url)
    data = write_csv(aegis_env / "bars.csv", trend_rows(30, 30))
    (aegis_env / "space.toml").write_text(
        "fast = { low = 3, high = 3 }\nslow = { low = 6, high = 6 }\n", encoding="utf-8"
    )
    if kind == "postgresql":  # the study's database holds the answers too
        shared = ["--storage", request.getfixturevalue("pg_dsn")]
    else:  # each machine its own SQLite study, one Redis for the answers
        url, prefix = request.getfixturevalue("redis_prefix")
        shared = ["--cache", f"{url}?prefix={prefix}"]
    calls: list[int] = []
    metrics: list[dict[str, Any]] = []
    for machine in ("a", "b"):
        out = aegis_env / machine
        cmd = optimize_cmd(data, out, "--trials", "1", "--min-trades", "0", "--settings",
                           str(settings), "--roles", "llm", "--study", machine,
                           *shared)  # fmt: skip
        cmd[cmd.index("--veto") + 1] = "on"  # verifier and commander on the LLM
        r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        calls.append(len(fake.calls()))
        storage = shared[1] if kind == "postgresql" else f"sqlite:///{out / 'study.db'}"
        (trial,) = trials_of(storage, machine)
        metrics.append(trial.user_attrs["metrics"])
        if machine == "a":
            assert trial.user_attrs["llm_tokens"] > 0  # it paid
        else:
            assert trial.user_attrs["llm_tokens"] == 0  # every answer from the shared cache
            assert metrics[1] == metrics[0]  # and the same run
    assert calls[0] > 0 and calls[1] == calls[0], calls  # machine b: no HTTP call at all


class Slow:
    """An endpoint client whose answer waits for the test; counts its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.endpoint = type("E", (), {"model": "m1"})()
        self.entered = threading.Event()
        self.go = threading.Event()
        self.calls = 0
        self.fail = fail

    def complete(self, system: str, messages: Any, *, timeout_s: float) -> Reply:
        self.calls += 1
        self.entered.set()
        assert self.go.wait(10)
        if self.fail:
            raise TimeoutError("the LLM timed out")
        return Reply("the answer", Usage(100, 20), "m1", "primary", 0.1)


def where_of(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "postgresql":
        return str(request.getfixturevalue("pg_dsn"))
    if kind == "redis":
        url, prefix = request.getfixturevalue("redis_prefix")
        return f"{url}?prefix={prefix}"
    return str(tmp_path / "llm-cache.db")


@pytest.mark.parametrize("kind", ["postgresql", "redis", "sqlite"])
def test_two_workers_missing_one_prompt_at_once_make_one_call(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    where = where_of(kind, request, tmp_path)
    caches = [ResponseCache(where), ResponseCache(where)]  # two workers, two connections
    inner = Slow()
    clients = []
    for cache in caches:
        cache.usage["analyst"] = RoleUsage()
        clients.append(CachingClient(inner, cache, "analyst", "v1"))
    got: list[str] = []
    ask = [
        threading.Thread(target=lambda c=c: got.append(c.complete("sys", [], timeout_s=5).text))
        for c in clients
    ]
    ask[0].start()
    wait_until(inner.entered.is_set, what="the first worker asking the LLM")
    refused: list[str] = []
    claim = caches[1].store.claim

    def counted(key: str, ttl_s: float) -> bool:
        ok = claim(key, ttl_s)
        if not ok:
            refused.append(key)
        return ok

    caches[1].store.claim = counted  # type: ignore[method-assign]
    ask[1].start()
    wait_until(lambda: len(refused) >= 2, what="the second worker polling for the answer")
    assert inner.calls == 1  # the second waits on the first's claim instead of calling
    inner.go.set()
    for t in ask:
        t.join(10)
    assert got == ["the answer", "the answer"] and inner.calls == 1
    reports = [c.report() for c in caches]
    assert sorted((r["calls"], r["cache_hits"]) for r in reports) == [(0, 1), (1, 0)]
    assert "@" not in reports[0]["cache"] or ":***@" in reports[0]["cache"]
    for c in caches:
        c.close()


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_a_failed_call_releases_its_claim(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    where = where_of(kind, request, tmp_path)
    a, b = ResponseCache(where), ResponseCache(where)
    inner = Slow(fail=True)
    inner.go.set()
    a.usage["analyst"] = RoleUsage()
    with pytest.raises(TimeoutError):
        CachingClient(inner, a, "analyst", "v1").complete("sys", [], timeout_s=5)
    key = a.key("analyst", "m1", "v1", "sys", [])
    assert b.get_or_claim(key, 60) is None  # free at once: b asks (not a 60 s wait)
    assert not a.store.claim(key, 60)  # and now b holds it
    a.close()
    b.close()


def test_an_unreachable_redis_cache_costs_calls_not_the_run() -> None:
    """A cache is never the truth: with nothing listening, every prompt goes to the LLM."""
    cache = ResponseCache("redis://127.0.0.1:1/0")  # port 1: nothing listens
    cache.usage["analyst"] = RoleUsage()
    inner = Slow()
    inner.go.set()
    client = CachingClient(inner, cache, "analyst", "v1")
    assert [client.complete("sys", [], timeout_s=5).text for _ in range(2)] == ["the answer"] * 2
    assert inner.calls == 2 and cache.down
    assert cache.report()["calls"] == 2
    cache.close()
