"""The backtest driver: the same tree as a live run, replaying bars on a virtual clock.

The driver owns the pace, not an actor: for each bar time it advances the clock there
(every due timer fires), hands every bar of that time to the market actor, then runs the
deterministic scheduler until its run queue is empty: the bar is fully decided (and any
order resting) before the next bar's open can fill it. The broker is the paper broker in
bar mode (no look-ahead), the ledger is SQLite in the out dir; no dashboard, no admin.

With a vectorised strategy the signals are computed once per series; a bar without a
signal (nor one on the bar before, which may leave a reversal to finish) is priced but
raises no decision event, which is what makes a long replay fast.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import time
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
from aegis_actors.backtest.idle import wait_idle
from aegis_actors.backtest.llm_cache import ResponseCache, cached_llm_backends
from aegis_actors.backtest.report import (
    metrics,
    read_ledger,
    summarize,
    write_outputs,
)
from aegis_actors.clock import VirtualClock
from aegis_actors.messages import GetStatus, ReplayBar, VolatilityIndex
from aegis_actors.runtime import MARKET, POSTURE, WATCHDOG
from aegis_actors.settings import Settings, SettingsError, load_settings
from aegis_actors.strategies import StrategyError, load_strategy
from aegis_actors.strategies.roles import ApproveAll, PassThrough, SignalAnalyst, SignalBook
from supervisors import inline

log = logger.bind(actor="backtest")

IDLE_TIMEOUT_S = 30.0  # real seconds one bar may take before the run is called stuck
INFLIGHT_ROUNDS = 1000
EXTERNAL_WAIT_S = 60.0  # real seconds an LLM call may take before the bar moves on
DEFAULT_OUT = "backtest-out"
HEARTBEAT_OFF_S = 10 * 365 * 86400.0
ROLE_NAMES = ("analyst", "verifier", "commander")
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
            "spool_path": str(ledger_dir / "spool.db"),
            "redis_url": "",
            "postgres_dsn": "",
        },
        "redis_url": "",  # no Redis: in-memory cache and so no admin channel
        "postgres_dsn": "",
        "dashboard": {"port": 0},
        "run": {"log_dir": str(out / "logs")},
        "risk": {"entry_ttl_s": entry_ttl(base.risk.entry_ttl_s, times)},
        # A replay has no wall-clock deadline to miss: an actor that hung would stop the
        # whole run (one thread) or its driver's settle (threads), never silently.
        "watchdog": {"heartbeat_every_s": HEARTBEAT_OFF_S},
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
    from aegis_actors.app import Aegis

    files = config.data_files()
    try:
        bar_file = load_many(files, config.symbol, strict=config.strict)
        strategy = load_strategy(config.strategy, config.params)
    except (BarFileError, StrategyError) as exc:
        raise BacktestError(str(exc)) from None
    _window(bar_file, config.start, config.end)
    vix = split_vix(bar_file, config, load_settings(config.settings).feed.vix_symbol)
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
    backends: dict[str, Any] = {}
    plan = Plan(bars)
    signals: dict[str, list[int]] = {}
    if strategy is not None:
        book = SignalBook(strategy)
        plan = event_plan(bars, book, signals)
        backends["analyst"] = SignalAnalyst(book)
    if not config.veto:
        backends["verifier"] = ApproveAll()
        backends["commander"] = PassThrough()
    cache: ResponseCache | None = None
    if any(getattr(settings.roles, r).backend == "llm" for r in ROLE_NAMES if r not in backends):
        cache = ResponseCache(Path(config.llm_cache or out / "llm-cache.db"))
        backends.update(cached_llm_backends(settings, cache, set(backends)))
    clock = VirtualClock(start=bars[0].ts - 1.0)
    t0 = time.perf_counter()
    if config.runtime == "inline":
        with inline.install() as sched:
            app = Aegis(settings, clock=clock, stderr=False, role_backends=backends)
            rt = app.start()
            try:
                t0 = time.perf_counter()
                quiet = Quiet(app.broker, settings, config.exits == "signal")
                equity, events, outcomes = replay_inline(
                    app, rt, clock, sched, bars, plan, config.progress, vix, quiet
                )
            finally:
                app.stop("backtest over")
    else:
        app = Aegis(settings, clock=clock, stderr=False, role_backends=backends)
        rt = app.start()
        try:
            t0 = time.perf_counter()
            equity, events, outcomes = replay(app, rt, clock, bars, plan, vix)
        finally:
            app.stop("backtest over")
    took = max(time.perf_counter() - t0, 1e-9)
    llm = None
    if cache is not None:
        llm = cache.report()
        cache.close()
    first_posture = getattr(app, "first_posture", "")
    with scratch:  # the finished ledger, checkpointed into one file, moves to the out dir
        checkpoint(ledger_dir / "aegis.db")
        shutil.move(str(ledger_dir / "aegis.db"), str(out / "aegis.db"))
    trades, counts = read_ledger(out / "aegis.db")
    report = summarize(
        bars=len(bars),
        bad_rows=dict(bar_file.bad),
        notes=dict(bar_file.notes),
        symbols=bar_file.symbols,
        events=events,
        counts=counts,
        trades=trades,
        equity=equity,
        capital=settings.broker.capital,
        outcomes=outcomes,
        strategy={
            "name": config.strategy,
            "params": dict(sorted(config.params.items())),
            "exits": config.exits,
            "veto": config.veto,
            "roles": settings.roles.analyst.backend if strategy is None else "strategy",
        },
        iso=bar_file.iso,
        closes=closes_by_symbol(bars),
        first_posture=first_posture,
        extra={"llm": llm} if llm is not None else None,
    )
    write_outputs(out, trades, equity, report, iso=bar_file.iso, html=config.html)
    return BacktestResult(
        metrics=metrics(report),
        equity=equity,
        trades=trades,
        report=report,
        out=out,
        bars_per_s=len(bars) / took,
    )


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


def feed_vix(tell: Any, vix: list[Bar], j: int, ts: float) -> int:
    """Hand the posture every VIX reading known by `ts` (at its simulated time)."""
    while j < len(vix) and vix[j].ts <= ts:
        tell(POSTURE, VolatilityIndex(value=vix[j].close, ts=vix[j].ts))
        j += 1
    return j


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


def first_posture_of(app: Any, rt: Any) -> None:
    try:
        app.first_posture = str(rt.directory.ask(POSTURE, GetStatus(), timeout=5.0)["posture"])
    except Exception:
        app.first_posture = ""


class Plan:
    """Which bars raise a decision event: every bar (the aegis rules), or a strategy's
    signal bars, plus the bar after one when that signal's close is working (the reversal
    then enters the other side once the close has filled)."""

    def __init__(self, bars: list[Bar], signal: list[bool] | None = None) -> None:
        self.bars = bars
        self.signal = signal if signal is not None else [True] * len(bars)
        self.after = [False] * len(bars)
        self.pending: dict[str, bool] = {}

    def event(self, i: int) -> bool:
        return self.signal[i] or (self.after[i] and self.pending.get(self.bars[i].symbol, False))

    def any_event(self, i: int, k: int) -> bool:
        return any(self.event(j) for j in range(i, k))

    def settled(self, i: int, k: int, broker: Any) -> None:
        """After bars i..k-1 ran: is a close working for a symbol that just signalled?"""
        signalled = {self.bars[j].symbol for j in range(i, k) if self.signal[j]}
        for symbol in signalled:
            held = sum(p.qty for p in broker.positions() if p.symbol == symbol)
            closing = any(
                o.symbol == symbol and (o.side == "sell") == (held > 0)
                for o in broker.open_orders()
            )
            self.pending[symbol] = bool(held) and closing


def event_plan(bars: list[Bar], book: SignalBook, signals: dict[str, list[int]]) -> Plan:
    by_symbol: dict[str, list[int]] = {}
    for i, b in enumerate(bars):
        by_symbol.setdefault(b.symbol, []).append(i)
    plan = Plan(bars, [False] * len(bars))
    for symbol, idx in by_symbol.items():
        sig = book.add(symbol, [bars[i].ts for i in idx], [bars[i].close for i in idx])
        signals[symbol] = sig
        for k, i in enumerate(idx):
            plan.signal[i] = bool(sig[k])
            plan.after[i] = bool(k and sig[k - 1] and not sig[k])
    return plan


def _replay_bar(b: Bar, event: bool) -> ReplayBar:
    # validated when loaded: build without validating again (the hot path of a long replay)
    return ReplayBar.model_construct(
        symbol=b.symbol,
        ts=b.ts,
        open=b.open,
        high=b.high,
        low=b.low,
        close=b.close,
        volume=b.volume,
        event=event,
    )


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, total: int, on: bool) -> None:
        self.total, self.on, self.shown = total, on and sys.stderr.isatty(), -1

    def update(self, done: int) -> None:
        if not self.on:
            return
        pct = done * 100 // max(1, self.total)
        if pct != self.shown:
            self.shown = pct
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\rbacktest [{bar:<25}] {pct:3d}% {done}/{self.total} bars")
            if done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def replay_inline(
    app: Any,
    rt: Any,
    clock: VirtualClock,
    sched: inline.Scheduler,
    bars: list[Bar],
    plan: Plan,
    progress: bool = False,
    vix: list[Bar] | None = None,
    quiet: Quiet | None = None,
) -> tuple[list[tuple[float, float]], int, dict[str, int]]:
    """The deterministic runtime: a bar is done when the run queue is empty (and no role
    call is out on a worker thread)."""
    sched.run()
    first_posture_of(app, rt)
    equity: list[tuple[float, float]] = []
    tell = rt.directory.tell
    account = app.broker.account
    bar = Progress(len(bars), progress)
    vix = vix or []
    push = rt.cache.push_price
    external = any(getattr(rt.settings.roles, r).backend == "llm" for r in ROLE_NAMES)
    external = external and not all(
        getattr(rt.role_backends.get(r), "inline", False) for r in ROLE_NAMES
    )
    i, j, n = 0, 0, len(bars)
    while i < n:
        ts = bars[i].ts
        k = i
        while k < n and bars[k].ts == ts:
            k += 1
        wake = plan.any_event(i, k)
        if quiet is not None and not wake:
            marked = quiet.equity(bars[i:k])
            if marked is not None:
                for b in bars[i:k]:  # the tree sleeps: the price joins the history
                    push(b.symbol, b.close, ts)
                i = k
                equity.append((ts, marked))
                bar.update(i)
                continue
        if ts > clock.now():
            sched.advance_to(clock, ts)
        j = feed_vix(tell, vix, j, ts)
        first = i
        while i < k:
            tell(MARKET, _replay_bar(bars[i], plan.event(i)))
            i += 1
        sched.run()
        if wake:
            if external:  # an llm role answers from a worker thread
                settle_inline(rt, sched)
            plan.settled(first, k, app.broker)
        now_equity = account().equity
        equity.append((ts, now_equity))
        if quiet is not None:
            quiet.told(now_equity)
        bar.update(i)
    market = rt.directory.ask(MARKET, GetStatus(), timeout=5.0)
    watchdog = rt.directory.ask(WATCHDOG, GetStatus(), timeout=5.0)
    outcomes = {str(k): int(v) for k, v in watchdog.get("outcomes", {}).items()}
    return equity, int(market.get("events", 0)), outcomes


class Quiet:
    """Which bars without a decision event may leave the tree asleep.

    Flat with no working order, such a bar cannot change anything. Holding with
    `--exits signal` (no reachable stop or target) and no working order, it only marks the
    position: the tree is woken once the equity has moved a quarter of the tightest loss
    limit since it last saw a price (so no risk limit is crossed unseen), otherwise the
    driver marks the equity itself, with the broker's formula. Housekeeping timers run
    when the tree is next woken, before any decision.
    """

    def __init__(self, broker: Any, settings: Settings, signal_exits: bool) -> None:
        self.broker = broker
        self.signal_exits = signal_exits
        r, w = settings.risk, settings.watchdog
        tight = min(r.minute_loss_limit_pct, r.daily_loss_limit_pct, w.capital_loss_halt_pct)
        self.band = tight / 4.0 / 100.0
        self.seen = 0.0  # the equity the tree last saw
        self.last: dict[str, float] = {}  # each symbol's latest close
        self.skipped = 0

    def equity(self, bars: list[Bar]) -> float | None:
        """This bar time's equity when the tree may sleep through it, else None."""
        for b in bars:
            self.last[b.symbol] = b.close
        broker = self.broker
        if broker.open_orders():
            return None
        positions = [p for p in broker.positions() if p.qty]
        cash = broker.account().cash
        if not positions:
            self.skipped += 1
            return float(cash)
        if not self.signal_exits:
            return None
        marks = self.last
        equity = cash + sum(p.qty * marks.get(p.symbol, p.avg_price) for p in positions)
        if abs(equity - self.seen) >= self.band * self.seen:
            return None
        self.skipped += 1
        return float(equity)

    def told(self, equity: float) -> None:
        self.seen = equity


def settle_inline(rt: Any, sched: inline.Scheduler) -> None:
    """An event still in flight with the run queue empty is a role call on a worker
    thread (an LLM): wait for its answer to be queued, then run it."""
    while True:
        st = rt.directory.ask(MARKET, GetStatus(), timeout=5.0)
        if not st.get("inflight") and not st.get("waiting"):
            return
        if not sched.wait_external(EXTERNAL_WAIT_S):
            log.warning("an event stayed in flight {}s; moving on", EXTERNAL_WAIT_S)
            return
        sched.run()


def replay(
    app: Any,
    rt: Any,
    clock: VirtualClock,
    bars: list[Bar],
    plan: Plan,
    vix: list[Bar] | None = None,
) -> tuple[list[tuple[float, float]], int, dict[str, int]]:
    """The threaded runtime (live parity): wait for idle mailboxes between bars."""
    settle(rt)
    first_posture_of(app, rt)
    equity: list[tuple[float, float]] = []
    i, j, vix = 0, 0, vix or []
    while i < len(bars):
        ts = bars[i].ts
        if ts > clock.now():
            clock.advance(ts - clock.now())
            wait_idle(IDLE_TIMEOUT_S)  # the timers that came due first (sweeps, postures)
        j = feed_vix(rt.directory.tell, vix, j, ts)
        first = i
        while i < len(bars) and bars[i].ts == ts:
            rt.directory.tell(MARKET, _replay_bar(bars[i], plan.event(i)))
            i += 1
        settle(rt)
        plan.settled(first, i, app.broker)
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
