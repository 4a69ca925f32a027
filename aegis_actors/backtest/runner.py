"""The backtest driver: the same tree as a live run, replaying bars on a virtual clock.

The driver owns the pace, not an actor: for each bar time it advances the clock there
(every due timer fires), hands every bar of that time to the market actor, then runs the
deterministic scheduler until its run queue is empty: the bar is fully decided (and any
order resting) before the next bar's open can fill it. The broker is the paper broker in
bar mode (no look-ahead), the ledger is SQLite in the out dir; no dashboard, no admin.

With a vectorised strategy the signals are computed once per series; a bar without a
signal raises no decision event, and a quiet bar may not wake the tree at all (plan.py),
which is what makes a long replay fast. This module sets the run up and reports it; the
loops are in replay.py.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from aegis_actors.backtest.api import BacktestConfig, BacktestResult
from aegis_actors.backtest.bars import (
    Bar,
    BarFile,
    BarFileError,
    load_bars,
    load_many,
    parse_ts,
)
from aegis_actors.backtest.llm_cache import ResponseCache, cached_llm_backends
from aegis_actors.backtest.plan import Plan, Quiet, event_plan
from aegis_actors.backtest.replay import ROLE_NAMES, Marks, Replayed, replay, replay_inline
from aegis_actors.backtest.report import (
    metrics,
    read_ledger,
    summarize,
    write_outputs,
)
from aegis_actors.clock import VirtualClock
from aegis_actors.settings import Settings, SettingsError, load_settings
from aegis_actors.strategies import StrategyError, load_strategy
from aegis_actors.strategies.roles import ApproveAll, PassThrough, SignalAnalyst, SignalBook
from supervisors import inline

log = logger.bind(actor="backtest")

DEFAULT_OUT = "backtest-out"
HEARTBEAT_OFF_S = 10 * 365 * 86400.0
REPORT_EVERY_S = 86400.0
# The replay ledger's transactions (one per order's write-ahead) per commit: its orders
# reach no real broker, and a crash means a rerun.
REPLAY_COMMIT_EVERY = 500  # summaries and session saves: once a simulated day
NO_STOP = {"stop_loss": -0.99, "take_profit": 9.99, "limit_ratio": 0.0}  # --exits signal


class BacktestError(Exception):
    """The backtest cannot run: bad data file, strategy or settings (one line, exit 2)."""


@dataclass
class Result:
    report: dict[str, Any]
    out: Path


def entry_ttl(base: float, times: list[float]) -> float:
    """An entry must live to see the next bar's open: advancing the clock to that bar runs
    the execution sweep first, so the TTL is raised to 1.5 times the widest bar gap."""
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return max(base, 1.5 * max(gaps, default=0.0))


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """Where the ledger is written during the run: memory (tmpfs) when the machine has it.
    A replay needs no fsync (a crash means a rerun); the finished ledger is moved to the
    out dir, so what a user opens afterwards is the same file."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix="aegis-bt-", dir=where)


def backtest_settings(
    config: BacktestConfig,
    data: Path,
    symbols: list[str],
    out: Path,
    times: list[float],
    ledger_dir: Path,
) -> Settings:
    base = load_settings(config.settings)
    overrides: dict[str, Any] = {
        "feed": {"kind": "replay", "replay_file": str(data), "symbols": symbols},
        "broker": {"kind": "paper", "paper_state_path": ""},
        "store": {
            "sqlite_path": str(ledger_dir / "aegis.db"),
            "sqlite_synchronous": "normal",  # an output a rerun makes again: no fsync per order
            "sqlite_commit_every": REPLAY_COMMIT_EVERY,  # nor a commit per order
            "spool_path": str(ledger_dir / "spool.db"),
            "redis_url": "",
            "postgres_dsn": "",
            # The commander's 10-second session save bounds what a crash loses; a replay
            # that crashes is rerun. Sessions still close on the next event and at stop.
            "save_every_s": max(base.store.save_every_s, REPORT_EVERY_S),
        },
        "redis_url": "",  # no Redis: in-memory cache and so no admin channel
        "postgres_dsn": "",
        "dashboard": {"port": 0},
        "run": {"log_dir": str(out / "logs")},
        "risk": {"entry_ttl_s": entry_ttl(base.risk.entry_ttl_s, times)},
        # Nobody is paged about a replay, and nobody can ack one: alerts are recorded
        # (ledger, log, report) with no contacts, and only a severe one escalates.
        "alerts": {
            "slack_url": "",
            "first": [],
            "second": [],
            "third": [],
            "escalate_from": "severe",
        },
        # A replay has no wall-clock deadline to miss: an actor that hung would stop the
        # whole run (one thread) or its driver's settle (threads), never silently. The
        # SPEC 7 summaries (latency, PnL, success rates) come once a simulated day: per
        # 10 minutes they were a log line and a ledger write on most woken bars, and
        # report.json says it all at the end. Tick-rate anomalies are the data's spacing.
        "watchdog": {
            "heartbeat_every_s": HEARTBEAT_OFF_S,
            "latency_log_every_s": max(base.watchdog.latency_log_every_s, REPORT_EVERY_S),
            "pnl_log_every_s": max(base.watchdog.pnl_log_every_s, REPORT_EVERY_S),
            "success_log_every_s": max(base.watchdog.success_log_every_s, REPORT_EVERY_S),
            "anomaly_every_s": max(base.watchdog.anomaly_every_s, REPORT_EVERY_S),
        },
    }
    if config.capital is not None:
        overrides["broker"]["capital"] = config.capital
    if config.roles is not None:
        backend = {"backend": config.roles}
        overrides["roles"] = {"analyst": backend, "verifier": backend, "commander": backend}
    if config.exits == "signal":  # the strategy's opposite signal is the only exit
        overrides["posture"] = {p: dict(NO_STOP) for p in ("offensive", "guerrilla", "defensive")}
    return load_settings(config.settings, **overrides)


def _window(bar_file: BarFile, start: str | None, end: str | None) -> None:
    try:
        lo = parse_ts(start) if start else None
        hi = parse_ts(end) if end else None
    except ValueError as exc:
        raise BacktestError(f"--from/--to: {exc}") from None
    if lo is not None or hi is not None:
        bar_file.bars = [
            b for b in bar_file.bars if (lo is None or b.ts >= lo) and (hi is None or b.ts < hi)
        ]
    if not bar_file.bars:
        raise BacktestError("no bars between --from and --to")


def execute(config: BacktestConfig) -> BacktestResult:
    files = config.data_files()
    try:
        bar_file = load_many(files, config.symbol, strict=config.strict)
        strategy = load_strategy(config.strategy, config.params)
        vix_symbol = load_settings(config.settings).feed.vix_symbol
    except (BarFileError, StrategyError, SettingsError) as exc:
        raise BacktestError(str(exc)) from None
    _window(bar_file, config.start, config.end)
    vix = split_vix(bar_file, config, vix_symbol)
    out = Path(config.out) if config.out is not None else Path(tempfile.mkdtemp(prefix="aegis-bt-"))
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("aegis.db", "aegis.db-wal", "aegis.db-shm", "spool.db"):
        (out / stale).unlink(missing_ok=True)  # every run starts from an empty ledger
    shutil.rmtree(out / "logs", ignore_errors=True)
    bars = bar_file.bars
    times = sorted({b.ts for b in bars})
    scratch = scratch_dir()
    ledger_dir = Path(scratch.name)
    try:
        settings = backtest_settings(config, files[0], bar_file.symbols, out, times, ledger_dir)
    except SettingsError as exc:
        scratch.cleanup()
        raise BacktestError(str(exc)) from None
    try:
        backends, plan, cache = role_backends(config, settings, strategy, bars, out)
    except BacktestError:
        scratch.cleanup()
        raise
    run = run_tree(config, settings, backends, bars, plan, vix)
    llm = None
    if cache is not None:
        llm = cache.report()
        cache.close()
    with scratch:  # the finished ledger, checkpointed into one file, moves to the out dir
        checkpoint(ledger_dir / "aegis.db")
        shutil.move(str(ledger_dir / "aegis.db"), str(out / "aegis.db"))
    trades, counts = read_ledger(out / "aegis.db")
    report = summarize(
        bars=len(bars),
        bad_rows=dict(bar_file.bad),
        notes=dict(bar_file.notes),
        symbols=bar_file.symbols,
        events=run.events,
        counts=counts,
        trades=trades,
        equity=run.equity,
        capital=settings.broker.capital,
        outcomes=run.outcomes,
        strategy={
            "name": config.strategy,
            "params": dict(sorted(config.params.items())),
            "exits": config.exits,
            "veto": config.veto,
            "roles": settings.roles.analyst.backend if strategy is None else "strategy",
        },
        iso=bar_file.iso,
        closes=closes_by_symbol(bars),
        first_posture=run.first_posture,
        extra={"llm": llm} if llm is not None else None,
    )
    write_outputs(out, trades, run.equity, report, iso=bar_file.iso, html=config.html)
    return BacktestResult(
        metrics=metrics(report),
        equity=run.equity,
        trades=trades,
        report=report,
        out=out,
        bars_per_s=len(bars) / max(run.seconds, 1e-9),
    )


def role_backends(
    config: BacktestConfig, settings: Settings, strategy: Any, bars: list[Bar], out: Path
) -> tuple[dict[str, Any], Plan, ResponseCache | None]:
    """The roles a backtest swaps in: the strategy as analyst (its signals computed here,
    once), the veto off, LLM roles behind the answer cache; and the event plan."""
    backends: dict[str, Any] = {}
    plan = Plan(bars)
    short = False
    if strategy is not None:
        book = SignalBook(strategy)
        short = book.short
        try:
            plan = event_plan(bars, book)
        except Exception as exc:  # a user's strategy: one line, not a traceback
            raise BacktestError(
                f"strategy {config.strategy}: signals failed: {type(exc).__name__}: {exc}"
            ) from None
        backends["analyst"] = SignalAnalyst(book)
    if not config.veto:
        backends["verifier"] = ApproveAll()
        # a strategy that may go short reverses on the opposite signal
        backends["commander"] = PassThrough(reverse=short)
    cache: ResponseCache | None = None
    if any(getattr(settings.roles, r).backend == "llm" for r in ROLE_NAMES if r not in backends):
        cache = ResponseCache(config.llm_cache or out / "llm-cache.db")
        backends.update(cached_llm_backends(settings, cache, set(backends)))
    return backends, plan, cache


def run_tree(
    config: BacktestConfig,
    settings: Settings,
    backends: dict[str, Any],
    bars: list[Bar],
    plan: Plan,
    vix: list[Bar],
) -> Replayed:
    """Start the tree on the chosen runtime, replay, stop it (start-up not timed)."""
    from aegis_actors.app import Aegis

    clock = VirtualClock(start=bars[0].ts - 1.0)
    times = len({b.ts for b in bars}) if config.on_checkpoint else 0
    marks = Marks(config.on_checkpoint, config.checkpoints, times)
    plan.signal_exits = config.exits == "signal"
    if config.runtime != "inline":
        app = Aegis(settings, clock=clock, stderr=False, role_backends=backends)
        rt = app.start()
        plan.broker = app.broker
        try:
            return replay(app, rt, clock, bars, plan, vix, marks)
        finally:
            app.stop("backtest over")
    from aegis_actors.store.actor import Store

    # The store only records: the driver holds its writes to the end of each bar, when
    # they go as one batch (an ask to it, the orders' write-ahead, is answered at once).
    with inline.install(inline.Scheduler(deferred=(Store,))) as sched:
        app = Aegis(settings, clock=clock, stderr=False, role_backends=backends)
        rt = app.start()
        plan.broker = app.broker
        try:
            quiet = Quiet(app.broker, settings, config.exits == "signal")
            return replay_inline(
                app, rt, clock, sched, bars, plan, config.progress, vix, quiet, marks
            )
        finally:
            app.stop("backtest over")


def split_vix(bar_file: BarFile, config: BacktestConfig, symbol: str) -> list[Bar]:
    """The volatility index: `--vix FILE` or the data's VIX symbol. It feeds the posture
    and is never traded, so it leaves the traded bars."""
    vix = [b for b in bar_file.bars if b.symbol == symbol]
    if vix:
        bar_file.bars = [b for b in bar_file.bars if b.symbol != symbol]
        if not bar_file.bars:
            raise BacktestError(f"the data holds only the volatility index {symbol}")
    if config.vix is not None:
        try:
            vix = load_bars(config.vix, symbol).bars
        except BarFileError as exc:
            raise BacktestError(f"--vix: {exc}") from None
    return vix


def checkpoint(db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")
    finally:
        con.close()


def closes_by_symbol(bars: list[Bar]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for b in bars:
        out.setdefault(b.symbol, []).append((b.ts, b.close))
    return out


def run_backtest(
    data: str | Path | list[str | Path],
    *,
    symbol: str | None = None,
    out: str | Path = DEFAULT_OUT,
    settings_path: str | None = None,
    stderr_logs: bool = False,
    runtime: str = "inline",
    **options: Any,
) -> Result:
    """Keyword form of `api.run_backtest` (kept for the CLI and older callers)."""
    config = BacktestConfig(
        data=data,
        symbol=symbol,
        out=out,
        settings=settings_path,
        runtime="threaded" if runtime == "threaded" else "inline",
        **options,
    )
    result = execute(config)
    return Result(result.report, result.out)
