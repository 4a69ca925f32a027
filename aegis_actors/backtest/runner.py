"""The backtest driver: the same tree as a live run, replaying bars on a virtual clock.

The driver owns the pace, not an actor: for each bar time it advances the clock there,
hands every bar of that time to the market actor, then waits until the tree is idle and
no event is in flight, so a bar is fully decided (and any order resting) before the next
bar's open can fill it. The broker is the paper broker in bar mode (no look-ahead), the
roles are the local rules, the ledger is SQLite in the out dir; no dashboard, no admin.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from aegis_actors.backtest.bars import BarFile, BarFileError, load_bars
from aegis_actors.backtest.idle import wait_idle
from aegis_actors.backtest.report import read_ledger, summarize, write_outputs
from aegis_actors.clock import VirtualClock
from aegis_actors.messages import GetStatus, ReplayBar
from aegis_actors.runtime import MARKET, WATCHDOG
from aegis_actors.settings import Settings, load_settings
from supervisors import inline

log = logger.bind(actor="backtest")

IDLE_TIMEOUT_S = 30.0  # real seconds one bar may take before the run is called stuck
INFLIGHT_ROUNDS = 1000
DEFAULT_OUT = "backtest-out"


class BacktestError(Exception):
    """The backtest cannot run: bad data file or settings (one line, exit 2)."""


@dataclass
class Result:
    report: dict[str, Any]
    out: Path


def entry_ttl(settings_path: str | None, times: list[float]) -> float:
    """An entry must live to see the next bar's open: advancing the clock to that bar runs
    the execution sweep first, so the TTL is raised to 1.5 times the widest bar gap."""
    base = load_settings(settings_path).risk.entry_ttl_s
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return max(base, 1.5 * max(gaps, default=0.0))


def backtest_settings(
    settings_path: str | None, data: Path, symbols: list[str], out: Path, ttl_s: float
) -> Settings:
    rules = {"backend": "rules"}
    return load_settings(
        settings_path,
        feed={"kind": "replay", "replay_file": str(data), "symbols": symbols},
        broker={"kind": "paper", "paper_state_path": ""},
        store={
            "sqlite_path": str(out / "aegis.db"),
            "spool_path": str(out / "spool.db"),
            "redis_url": "",
            "postgres_dsn": "",
        },
        redis_url="",  # no Redis: in-memory cache and so no admin channel
        postgres_dsn="",
        dashboard={"port": 0},
        run={"log_dir": str(out / "logs")},
        roles={"analyst": rules, "verifier": rules, "commander": rules},
        risk={"entry_ttl_s": ttl_s},
    )


def run_backtest(
    data: str | Path,
    *,
    symbol: str | None = None,
    out: str | Path = DEFAULT_OUT,
    settings_path: str | None = None,
    stderr_logs: bool = False,
    runtime: str = "inline",
) -> Result:
    from aegis_actors.app import Aegis

    data, out = Path(data), Path(out)
    try:
        bar_file = load_bars(data, symbol)
    except BarFileError as exc:
        raise BacktestError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("aegis.db", "aegis.db-wal", "aegis.db-shm", "spool.db"):
        (out / stale).unlink(missing_ok=True)  # every run starts from an empty ledger
    shutil.rmtree(out / "logs", ignore_errors=True)
    times = sorted({b.ts for b in bar_file.bars})
    ttl_s = entry_ttl(settings_path, times)
    settings = backtest_settings(settings_path, data, bar_file.symbols, out, ttl_s)
    clock = VirtualClock(start=bar_file.bars[0].ts - 1.0)
    if runtime == "inline":
        with inline.install() as sched:
            app = Aegis(settings, clock=clock, stderr=stderr_logs)
            rt = app.start()
            try:
                equity, events, outcomes = replay_inline(app, rt, clock, sched, bar_file)
            finally:
                app.stop("backtest over")
    else:
        app = Aegis(settings, clock=clock, stderr=stderr_logs)
        rt = app.start()
        try:
            equity, events, outcomes = replay(app, rt, clock, bar_file)
        finally:
            app.stop("backtest over")
    trades, counts = read_ledger(out / "aegis.db")
    report = summarize(
        bars=len(bar_file.bars),
        bad_rows=dict(bar_file.bad),
        symbols=bar_file.symbols,
        events=events,
        counts=counts,
        trades=trades,
        equity=equity,
        capital=settings.broker.capital,
        outcomes=outcomes,
    )
    write_outputs(out, trades, equity, report)
    return Result(report, out)


def replay_inline(
    app: Any, rt: Any, clock: VirtualClock, sched: inline.Scheduler, bar_file: BarFile
) -> tuple[list[tuple[float, float]], int, dict[str, int]]:
    """The deterministic runtime: a bar is done when the run queue is empty."""
    sched.run()
    equity: list[tuple[float, float]] = []
    bars = bar_file.bars
    tell = rt.directory.tell
    i, n = 0, len(bars)
    while i < n:
        ts = bars[i].ts
        if ts > clock.now():
            sched.advance_to(clock, ts)
        while i < n and bars[i].ts == ts:
            b = bars[i]
            tell(
                MARKET,
                ReplayBar(
                    symbol=b.symbol,
                    ts=b.ts,
                    open=b.open,
                    high=b.high,
                    low=b.low,
                    close=b.close,
                    volume=b.volume,
                ),
            )
            i += 1
        sched.run()
        equity.append((ts, app.broker.account().equity))
    market = rt.directory.ask(MARKET, GetStatus(), timeout=5.0)
    watchdog = rt.directory.ask(WATCHDOG, GetStatus(), timeout=5.0)
    outcomes = {str(k): int(v) for k, v in watchdog.get("outcomes", {}).items()}
    return equity, int(market.get("events", 0)), outcomes


def replay(
    app: Any, rt: Any, clock: VirtualClock, bar_file: BarFile
) -> tuple[list[tuple[float, float]], int, dict[str, int]]:
    """Feed the bars time by time; the equity after each bar time, events, outcomes."""
    settle(rt)
    equity: list[tuple[float, float]] = []
    bars = bar_file.bars
    i = 0
    while i < len(bars):
        ts = bars[i].ts
        if ts > clock.now():
            clock.advance(ts - clock.now())
            wait_idle(IDLE_TIMEOUT_S)  # the timers that came due first (sweeps, postures)
        while i < len(bars) and bars[i].ts == ts:
            b = bars[i]
            rt.directory.tell(
                MARKET,
                ReplayBar(
                    symbol=b.symbol,
                    ts=b.ts,
                    open=b.open,
                    high=b.high,
                    low=b.low,
                    close=b.close,
                    volume=b.volume,
                ),
            )
            i += 1
        settle(rt)
        equity.append((ts, app.broker.account().equity))
    market = rt.directory.ask(MARKET, GetStatus(), timeout=5.0)
    watchdog = rt.directory.ask(WATCHDOG, GetStatus(), timeout=5.0)
    outcomes = {str(k): int(v) for k, v in watchdog.get("outcomes", {}).items()}
    return equity, int(market.get("events", 0)), outcomes


def settle(rt: Any) -> None:
    """Idle mailboxes and no event in flight at the gateway: this bar is done.

    An event still in flight with every mailbox idle is work off the mailboxes (a role's
    call); it gets `INFLIGHT_ROUNDS` looks before the bar is left to its stage timeouts."""
    for _ in range(INFLIGHT_ROUNDS):
        if not wait_idle(IDLE_TIMEOUT_S):
            raise RuntimeError(f"the tree stayed busy for {IDLE_TIMEOUT_S}s on one bar")
        st = rt.directory.ask(MARKET, GetStatus(), timeout=5.0)
        if not st.get("inflight") and not st.get("waiting"):
            if wait_idle(IDLE_TIMEOUT_S):
                return
    log.warning("events still in flight after {} idle checks; moving on", INFLIGHT_ROUNDS)
