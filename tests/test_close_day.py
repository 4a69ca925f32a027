"""close-day on the ledger of a short run, as an operator runs it after the session: the
report's P&L is the fills' P&L, the unfilled orders are gone at the (fake) broker, the
logs are archived, and a second run for the same day changes nothing."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import drive, settle, wait_until

from aegis_actors.brokers.alpaca_sim import AlpacaSim
from aegis_actors.closeday.run import close_day
from aegis_actors.logs import flush
from aegis_actors.settings import Settings
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock

pytestmark = pytest.mark.e2e


@pytest.fixture
def vclock() -> VirtualClock:
    """Virtual time on today's date, so the ledger's day is the log lines' (wall) day."""
    return VirtualClock(start=time.time())


def today(clock: VirtualClock) -> date:
    return datetime.fromtimestamp(clock.now(), UTC).date()


def snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def ledger_rows(s: Settings) -> dict[str, list[dict[str, Any]]]:
    db = open_database(sqlite_path=s.store.sqlite_path, postgres_dsn=s.store.postgres_dsn)
    try:
        return {t: db.select(t, order_by="id") for t in ("orders", "fills")}
    finally:
        db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_report_pnl_is_the_fills_and_a_second_run_changes_nothing(
    backend: str, aegis_factory: Any, vclock: VirtualClock, request: pytest.FixtureRequest
) -> None:
    store: dict[str, Any] = {}
    if backend == "postgres":
        store = {"postgres_dsn": request.getfixturevalue("pg_dsn")}
    else:
        store = {"sqlite_path": str(Path.cwd() / "var" / "aegis.db")}
    app = aegis_factory(feed={"symbols": ["AAPL", "MSFT", "SPY"], "volatility": 0.004}, store=store)
    drive(vclock, 120.0, step=0.5)
    settle()
    app.stop("session over")
    flush()
    s = app.settings
    rows = ledger_rows(s)
    assert rows["fills"], "the short run made no fill"
    out = Path.cwd() / "reports"

    steps = close_day(s, today(vclock), out)
    assert [st.name for st in steps] == [
        "cancel unfilled orders",
        "performance report",
        "archive logs",
        "next-day readiness",
    ]
    assert all(st.ok for st in steps), [st.line() for st in steps]
    r = json.loads((out / f"daily-{today(vclock)}.json").read_text())

    # the P&L from the fills alone: cash flows, fees, and what is still held at its mark
    cash = sum((-1 if f["side"] == "buy" else 1) * f["qty"] * f["price"] for f in rows["fills"])
    fees = sum(f["fee"] for f in rows["fills"])
    held: dict[str, float] = {}
    for f in rows["fills"]:
        held[f["symbol"]] = (
            held.get(f["symbol"], 0.0) + (1 if f["side"] == "buy" else -1) * f["qty"]
        )
    marks = {p["symbol"]: p["mark"] for p in r["open_positions"]}
    assert {k for k, q in held.items() if abs(q) > 1e-9} == set(marks)
    expected = cash + sum(q * marks.get(k, 0.0) for k, q in held.items()) - fees
    assert r["pnl"]["net"] == pytest.approx(expected, abs=0.05)
    assert r["pnl"]["fees"] == pytest.approx(fees, abs=0.01)
    assert r["fills"] == len(rows["fills"])
    assert sum(v["fills"] for v in r["by_posture"].values()) == len(rows["fills"])
    assert r["pnl"]["equity_close"] == pytest.approx(s.broker.capital + expected, abs=0.05)
    assert {t["kind"] for t in r["accuracy"]["targets"]} == {"analysis", "veto", "execution"}
    assert (
        r["latency"]["analysis"]["count"] > 0 and r["latency"]["analysis"]["source"] == "decisions"
    )
    assert r["latency"]["cycle"]["count"] > 0  # kept by the watchdog when the run stopped
    assert r["latency"]["cycle"]["source"].startswith("watchdog")
    html = (out / f"daily-{today(vclock)}.html").read_text()
    assert "<svg" in html and "<script" not in html and "http" not in html.split("<body>")[1]

    archive = Path(s.run.log_dir) / "archive" / f"aegis-{today(vclock)}.jsonl.gz"
    with gzip.open(archive, "rt") as f:
        archived = f.readlines()
    assert any("AEGIS starting" in line for line in archived)

    before = snapshot(Path.cwd() / "reports") | snapshot(archive.parent)
    again = close_day(s, today(vclock), out)
    assert all(st.ok for st in again)
    assert "(none open)" in again[0].detail
    assert "unchanged" in again[1].detail and "already archived" in again[2].detail
    assert snapshot(Path.cwd() / "reports") | snapshot(archive.parent) == before
    assert ledger_rows(s) == rows


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[AlpacaSim]:
    s = AlpacaSim(key_id="kid", secret_key="sek").start()
    monkeypatch.setenv("AEGIS_BROKER__KEY_ID", "kid")
    monkeypatch.setenv("AEGIS_BROKER__SECRET_KEY", "sek")
    yield s
    s.stop()


@pytest.mark.integration
@pytest.mark.parametrize("process", ["stopped", "running"])
def test_unfilled_orders_are_cancelled_at_the_broker(
    process: str,
    aegis_factory: Any,
    vclock: VirtualClock,
    sim: AlpacaSim,
    redis_prefix: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sim has no market of its own, so every limit order rests there unfilled."""
    sections: dict[str, Any] = {
        "broker": {"kind": "alpaca", "url": sim.url, "poll_every_s": 0.0},
        "feed": {"symbols": ["AAPL", "MSFT", "SPY"], "volatility": 0.004},
        "risk": {"entry_ttl_s": 3600.0},
    }
    if process == "running":
        monkeypatch.setenv("AEGIS_ADMIN_SECRET", "close-day-secret")
        url, prefix = redis_prefix
        sections["store"] = {
            "sqlite_path": str(Path.cwd() / "var" / "aegis.db"),
            "redis_url": url,
            "redis_prefix": prefix,
        }
        sections["admin"] = {"channel": f"{prefix}admin", "events_channel": f"{prefix}events"}
    app = aegis_factory(**sections)
    for _ in range(40):
        drive(vclock, 5.0, step=0.5)
        if len(sim.open_orders()) >= 2:
            break
    resting = {o["client_order_id"] for o in sim.open_orders()}
    assert len(resting) >= 2, "the run left no order resting at the broker"
    if process == "stopped":
        app.stop("session over")
    s = app.settings

    steps = close_day(s, today(vclock), Path.cwd() / "reports")
    cancel = steps[0]
    assert cancel.ok, cancel.line()
    assert ("by the running process" in cancel.detail) == (process == "running")
    for coid in resting:
        assert coid in cancel.detail  # says which
    assert sim.open_orders() == []
    if process == "running":
        wait_until(
            lambda: (
                {
                    o["client_order_id"]
                    for o in ledger_rows(s)["orders"]
                    if o["status"] == "cancelled"
                }
                >= resting
            ),
            what="the process to record the cancellations",
        )
    cancelled = {
        o["client_order_id"] for o in ledger_rows(s)["orders"] if o["status"] == "cancelled"
    }
    assert resting <= cancelled
    again = close_day(s, today(vclock), Path.cwd() / "reports")
    assert again[0].ok and "(none open)" in again[0].detail


def test_bad_date_and_unreachable_ledger(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "AEGIS_DASHBOARD__PORT": "0"}
    run = lambda *a, **e: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "aegis_actors", "close-day", *a],
        cwd=tmp_path,
        env={**env, **e},
        capture_output=True,
        text=True,
        timeout=60,
    )
    r = run("--date", "yesterday")
    assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr
    r = run(AEGIS_POSTGRES_DSN="postgresql://postgres@127.0.0.1:1/x?connect_timeout=1")
    assert r.returncode == 1 and r.stdout.startswith("FAIL  ledger")
    (tmp_path / "taken").write_text("a file, not a directory")
    r = run("--out", "taken")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and lines[1].startswith("FAIL  performance report")
    assert lines[0].startswith("PASS  cancel unfilled orders")


def test_a_running_process_that_cannot_be_asked_is_left_alone(
    aegis_factory: Any, vclock: VirtualClock
) -> None:
    from alerts_receivers import free_port

    app = aegis_factory(dashboard={"port": free_port()}, feed={"symbols": ["AAPL"]})
    drive(vclock, 5.0, step=0.5)
    before = ledger_rows(app.settings)
    steps = close_day(app.settings, today(vclock), Path.cwd() / "reports")
    assert not steps[0].ok and "cannot be asked without the admin channel" in steps[0].detail
    assert [st.name for st in steps][1:] == [
        "performance report",
        "archive logs",
        "next-day readiness",
    ]
    after = ledger_rows(app.settings)
    assert [o["status"] for o in after["orders"][: len(before["orders"])]] == [
        o["status"] for o in before["orders"]
    ]
