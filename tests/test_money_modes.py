"""Issue 11, defect 3: an automatic `shutdown` must end one run and never brick the next.

The mode was kept in Redis and read back at every start, so after an automatic shutdown
every later start on that Redis made no decisions, and the run that shut down exited 0.
Now the next run starts `safe` with one line saying why and how to leave it; the one
after a clean stop starts `normal`; `--resume` starts normal at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import settle, wait_until
from money_kit import buy, pg_store

from aegis_actors.messages import GetStatus, RequestMode, TradingMode
from aegis_actors.runtime import EXECUTION, WATCHDOG
from aegis_actors.watchdog.runs import StartMode, start_mode


def mode(app: Any) -> tuple[str, str]:
    d = app.rt.directory
    return d.ask(WATCHDOG, GetStatus(), 5.0)["mode"], d.ask(EXECUTION, GetStatus(), 5.0)["mode"]


def safe_lines(log_dir: Path) -> list[str]:
    lines = (log_dir / "aegis.jsonl").read_text().splitlines()
    texts = [json.loads(line)["msg"] for line in lines]
    return [t for t in texts if "ended in an automatic shutdown" in t and "starting" in t]


@pytest.mark.integration
def test_automatic_shutdown_exits_1_and_the_next_run_starts_safe_then_normal(
    aegis_factory: Callable[..., Any],
    aegis_env: Path,
    pg_dsn: str,
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    settings = {
        "store": {
            "postgres_dsn": pg_dsn,
            "redis_url": url,
            "redis_prefix": prefix,
            "spool_path": str(aegis_env / "var" / "spool.db"),
        },
        "feed": {"symbols": ["SPY"]},
    }
    first = aegis_factory(**settings)
    assert mode(first) == ("normal", "normal")
    first.rt.directory.tell(
        WATCHDOG, RequestMode(target=TradingMode.SHUTDOWN, reason="feed down past the 30s tier")
    )
    assert first.rt.shutdown.wait(10)
    settle()
    assert first.stop("shutdown") == 1  # an automatic shutdown is a failed run

    second = aegis_factory(**settings)
    assert mode(second) == ("safe", "safe")
    (line,) = safe_lines(aegis_env / "logs")
    assert "feed down past the 30s tier" in line
    assert "admin mode --set normal" in line and "run --resume" in line
    answer = second.rt.directory.ask(
        WATCHDOG, RequestMode(target=TradingMode.NORMAL, reason="operator", operator=True), 5.0
    )
    assert answer.ok is True
    wait_until(lambda: mode(second) == ("normal", "normal"), what="normal again")
    assert second.stop("clean") == 0

    third = aegis_factory(**settings)
    assert mode(third) == ("normal", "normal")
    assert len(safe_lines(aegis_env / "logs")) == 1
    assert third.stop("clean") == 0


def test_start_mode_rules() -> None:
    ended = {"run_id": "r1", "ended": "automatic shutdown", "reason": "feed down"}
    assert start_mode(None, resume=False) == StartMode(TradingMode.NORMAL)
    assert start_mode({"run_id": "r1", "ended": ""}, resume=False) == StartMode(TradingMode.NORMAL)
    assert start_mode(ended, resume=False).mode is TradingMode.SAFE
    resumed = start_mode(ended, resume=True)
    assert resumed.mode is TradingMode.NORMAL and "--resume" in resumed.why


def test_run_takes_resume() -> None:
    from aegis_actors.cli import parser

    assert parser().parse_args(["run", "--resume"]).resume is True
    assert parser().parse_args(["--resume"]).resume is True
    assert parser().parse_args(["run"]).resume is False


@pytest.mark.integration
def test_an_automatic_shutdown_liquidates_before_the_stop_closes_the_door(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: Any
) -> None:
    from aegis_actors.messages import Tick

    app = aegis_factory(
        store=pg_store(aegis_env, pg_dsn),
        feed={"symbols": ["SPY"]},
    )
    d = app.rt.directory
    d.tell(EXECUTION, Tick(symbol="AAPL", price=100.0, ts=vclock.now()))
    d.tell(EXECUTION, buy("d-1", vclock.now()))
    d.tell(EXECUTION, Tick(symbol="AAPL", price=100.0, ts=vclock.now()))
    wait_until(lambda: app.broker.positions(), what="the AAPL position")
    d.tell(WATCHDOG, RequestMode(target=TradingMode.SHUTDOWN, reason="test tier"))
    assert app.rt.shutdown.wait(10)
    assert app.stop("automatic shutdown") == 1  # at once, as the command line does
    assert app.broker.positions() == []  # closed by safe before the door shut
