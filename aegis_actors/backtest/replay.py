"""The replay loops: bar times in order through the tree, on the deterministic runtime
(a bar is done when the run queue is empty) or on the threaded one (idle mailboxes)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from aegis_actors.backtest.api import Checkpoint
from aegis_actors.backtest.bars import Bar
from aegis_actors.backtest.idle import wait_idle
from aegis_actors.backtest.plan import Plan, Quiet
from aegis_actors.clock import VirtualClock
from aegis_actors.gcpause import replaying
from aegis_actors.messages import (
    FlowReply,
    GetFlow,
    GetOutcomes,
    GetPosture,
    OutcomesReply,
    PostureReply,
    ReplayBar,
    VolatilityIndex,
)
from aegis_actors.runtime import MARKET, POSTURE, WATCHDOG
from supervisors import inline

log = logger.bind(actor="backtest")

IDLE_TIMEOUT_S = 30.0  # real seconds one bar may take before the run is called stuck
INFLIGHT_ROUNDS = 1000
EXTERNAL_WAIT_S = 60.0  # real seconds an LLM call may take before the bar moves on
ROLE_NAMES = ("analyst", "verifier", "commander")
# The store's writes wait in the scheduler over bars until an ask to the store (a
# write-ahead) takes them, or this many wait; the store then keeps them for its next batch
# (a replay's grouped ledger, store/actor.py).
HELD_MAX = 1000


@dataclass
class Replayed:
    """What a replay loop hands back: the equity after each bar time and the tree's counts."""

    equity: list[tuple[float, float]] = field(default_factory=list)
    events: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    first_posture: str = ""
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0  # real time of the replay itself (start-up and stop excluded)

    def finish(self, rt: Any) -> Replayed:
        self.seconds = time.perf_counter() - self.started
        self.outcomes = rt.ask(WATCHDOG, GetOutcomes(), 5.0, OutcomesReply).outcomes
        self.events = rt.ask(MARKET, GetFlow(), 5.0, FlowReply).events
        return self


class Marks:
    """Calls the checkpoint hook once the equity series (one point per bar time) reaches
    each of `n` evenly spaced lengths, k * times // (n + 1) for k = 1..n (never the end:
    the final figures are the run's own). The loops test `len(equity) >= marks.next` only."""

    def __init__(self, hook: Checkpoint | None = None, n: int = 0, times: int = 0) -> None:
        self.hook = hook
        self.at = sorted({k * times // (n + 1) for k in range(1, n + 1)} - {0}) if hook else []
        self.step = 0
        self.next: float = self.at[0] if self.at else math.inf

    def stop(self, equity: list[tuple[float, float]]) -> bool:
        """Call the hook for every length reached; True: it asked to end the replay."""
        assert self.hook is not None
        stop = False
        while not stop and self.step < len(self.at) and len(equity) >= self.at[self.step]:
            self.step += 1
            stop = self.hook(self.step, equity)
        self.next = self.at[self.step] if self.step < len(self.at) and not stop else math.inf
        return stop


def feed_vix(tell: Any, vix: list[Bar], j: int, ts: float, clock: VirtualClock, to: Any) -> int:
    """Hand the posture every VIX reading known by `ts`, each at its own simulated time
    (`to(t)` moves the clock there first), so the 30-minute evaluations in between see
    the reading of their moment, never a later one."""
    while j < len(vix) and vix[j].ts <= ts:
        if vix[j].ts > clock.now():
            to(vix[j].ts)
        tell(POSTURE, VolatilityIndex(value=vix[j].close, ts=vix[j].ts))
        j += 1
    return j


def first_posture_of(rt: Any) -> str:
    try:
        return str(rt.ask(POSTURE, GetPosture(), 5.0, PostureReply).posture)
    except Exception:
        return ""


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


def replay_inline(*args: Any, **kwargs: Any) -> Replayed:
    """`_replay_inline` with what exists before it (the bars, the tree) left out of the
    collector's full passes, and those rarer (`gcpause.replaying`): each is tens of
    milliseconds over a long series' objects."""
    with replaying():
        return _replay_inline(*args, **kwargs)


def _replay_inline(
    app: Any,
    rt: Any,
    clock: VirtualClock,
    sched: inline.Scheduler,
    bars: list[Bar],
    plan: Plan,
    progress: bool = False,
    vix: list[Bar] | None = None,
    quiet: Quiet | None = None,
    marks: Marks | None = None,
) -> Replayed:
    """The deterministic runtime: a bar is done when the run queue is empty (and no role
    call is out on a worker thread)."""
    sched.run()
    out = Replayed(first_posture=first_posture_of(rt))
    equity = out.equity
    tell = rt.directory.tell
    account = app.broker.account
    bar = Progress(len(bars), progress)
    vix = vix or []
    push = rt.cache.push_price
    external = any(getattr(rt.settings.roles, r).backend == "llm" for r in ROLE_NAMES)
    external = external and not all(
        getattr(rt.role_backends.get(r), "inline", False) for r in ROLE_NAMES
    )
    marks = marks or Marks()
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
                if len(equity) >= marks.next and marks.stop(equity):
                    break
                continue
        first = i
        with sched.holding(HELD_MAX):  # the store's writes: one batch per write-ahead
            j = feed_vix(tell, vix, j, ts, clock, lambda t: sched.advance_to(clock, t))
            if ts > clock.now():
                sched.advance_to(clock, ts)
            sched.run()
            while i < k:
                tell(MARKET, _replay_bar(bars[i], plan.event(i)))
                i += 1
            sched.run()
            if wake and external:  # an llm role answers from a worker thread
                settle_inline(rt, sched)
        now_equity = account().equity
        equity.append((ts, now_equity))
        if quiet is not None:
            quiet.told(bars[first:k], now_equity)
        bar.update(i)
        if len(equity) >= marks.next and marks.stop(equity):
            break
    sched.run()  # what the store still holds
    return out.finish(rt)


def settle_inline(rt: Any, sched: inline.Scheduler) -> None:
    """An event still in flight with the run queue empty is a role call on a worker
    thread (an LLM): wait for its answer to be queued, then run it."""
    while True:
        if rt.ask(MARKET, GetFlow(), 5.0, FlowReply).idle:
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
    marks: Marks | None = None,
) -> Replayed:
    """The threaded runtime (live parity): wait for idle mailboxes between bars."""
    settle(rt)
    out = Replayed(first_posture=first_posture_of(rt))
    equity = out.equity
    i, j, vix = 0, 0, vix or []
    marks = marks or Marks()

    def to(t: float) -> None:
        clock.advance_to(t)
        wait_idle(IDLE_TIMEOUT_S)  # the timers that came due first (sweeps, postures)

    while i < len(bars):
        ts = bars[i].ts
        j = feed_vix(rt.directory.tell, vix, j, ts, clock, to)
        if ts > clock.now():
            to(ts)
        while i < len(bars) and bars[i].ts == ts:
            rt.directory.tell(MARKET, _replay_bar(bars[i], plan.event(i)))
            i += 1
        settle(rt)
        equity.append((ts, app.broker.account().equity))
        if len(equity) >= marks.next and marks.stop(equity):
            break
    return out.finish(rt)


def settle(rt: Any) -> None:
    """Idle mailboxes and no event in flight at the gateway: this bar is done.

    An event still in flight with every mailbox idle is work off the mailboxes (a role's
    call); it gets `INFLIGHT_ROUNDS` looks before the bar is left to its stage timeouts."""
    for _ in range(INFLIGHT_ROUNDS):
        if not wait_idle(IDLE_TIMEOUT_S):
            raise RuntimeError(f"the tree stayed busy for {IDLE_TIMEOUT_S}s on one bar")
        if rt.ask(MARKET, GetFlow(), 5.0, FlowReply).idle:
            if wait_idle(IDLE_TIMEOUT_S):
                return
    log.warning("events still in flight after {} idle checks; moving on", INFLIGHT_ROUNDS)
