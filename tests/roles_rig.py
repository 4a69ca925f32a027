"""The three rules roles' handlers driven directly, on a virtual clock, without threads.

The actors are built but never started as pykka actors: their handlers run on the
caller's thread, and what they tell another actor is captured by a directory of our own
and handed on at once (analyst and verifier answers to the commander). So a fixed
sequence of contexts gives the same messages every run: a record of what the roles said
(`tests/test_roles_records.py`) and a deterministic CPU measure (`scripts/profile_roles.py`).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aegis_actors.context import posture_params
from aegis_actors.messages import (
    CONTEXT,
    T0,
    Context,
    DurableState,
    MarketEvent,
    PositionView,
    Posture,
    StageFailure,
    TradingMode,
)
from aegis_actors.roles import rules
from aegis_actors.roles.actors import Analyst, Commander, Verifier, _StageTimeout
from aegis_actors.runtime import (
    ANALYST,
    COMMANDER,
    TOPIC_DECISIONS,
    VERIFIER,
    WATCHDOG,
    Runtime,
)
from aegis_actors.settings import load_settings
from supervisors import ChildContext
from supervisors.clock import VirtualClock

# the postures' parameters as a default run has them (the context loader's own reading)
PARAMS = {p: posture_params(load_settings(None), p) for p in Posture}
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN")


class _Directory:
    """Captures every tell; the roles' answers are routed on by `RolesRig.pump`."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, Any]] = deque()

    def tell(self, name: str, message: Any) -> bool:
        self.queue.append((name, message))
        return True

    def subscribers(self, topic: str) -> tuple[str, ...]:
        return ("store", WATCHDOG) if topic == TOPIC_DECISIONS else ()

    def ask(self, name: str, message: Any, timeout: float) -> Any:
        return DurableState()  # the commander's session lookup: no saved session


@dataclass
class RolesRig:
    clock: VirtualClock = field(default_factory=VirtualClock)
    directory: _Directory = field(default_factory=_Directory)
    out: list[tuple[str, Any]] = field(default_factory=list)  # what left the three roles
    keep: bool = True  # False: what leaves is dropped (a long measuring run)

    def __post_init__(self) -> None:
        settings = load_settings(None)
        self.rt = Runtime(settings=settings, clock=self.clock, directory=self.directory)  # type: ignore[arg-type]
        self.actors: dict[str, Any] = {}
        for name, cls in ((ANALYST, Analyst), (VERIFIER, Verifier), (COMMANDER, Commander)):
            ctx = ChildContext(name, f"/{name}", self.directory, self.clock)  # type: ignore[arg-type]
            actor = cls(ctx, self.rt)
            actor.on_start()
            self.actors[name] = actor
        self.pump()
        self.out.clear()  # the commander's start-up messages are not the events'

    def tell(self, name: str, message: Any) -> None:
        self.actors[name].on_receive(message)
        self.pump()

    def pump(self) -> None:
        """Hand what the roles told each other on, keep the rest."""
        q = self.directory.queue
        while q:
            name, msg = q.popleft()
            actor = self.actors.get(name)
            if actor is not None:
                actor.on_receive(msg)
            elif self.keep:
                self.out.append((name, msg))

    def context(self, ctx: Context) -> None:
        """One event as the context loader hands it out (parallel verification)."""
        for name in (COMMANDER, ANALYST, VERIFIER):
            self.tell(name, ctx)


def bench_contexts(n: int, start: float = 1_767_225_600.0) -> list[Context]:
    """`n` contexts as the spine bench made them before its tape (events told to the
    gateway at one price): 40 prints drifting up, down or flat by symbol, no position,
    normal mode: two in three buy or sell, one holds."""
    out = []
    params = PARAMS[Posture.GUERRILLA]
    for i in range(n):
        t = start - 1.0 + i * 0.0005  # behind the rig's clock: every stage takes a while
        drift = 1.001 if i % 3 == 0 else (0.999 if i % 3 == 1 else 1.0)
        prices = [100.0 * drift**j for j in range(40)]
        symbol = f"S{i % 6000:05d}"
        event = MarketEvent(
            event_id=f"ev-{i:08d}",
            symbol=symbol,
            price=100.0,
            ts=t,
            stamps={T0: t, CONTEXT: t + 0.0005},
        )
        out.append(
            Context.trusted(
                event_id=event.event_id,
                stamps=event.stamps,
                event=event,
                symbol=symbol,
                prices=prices,
                price_age_s=0.2,
                capital=100_000.0,
                posture=Posture.GUERRILLA,
                params=params,
                mode=TradingMode.NORMAL,
                indicators=rules.compute(prices),
            )
        )
    return out


def contexts(n: int, seed: int = 13, start: float = 1_767_225_600.0) -> list[Context]:
    """`n` varied contexts: trends both ways, ranges, short or jumpy histories, held
    positions, other modes and postures, stale data, headlines."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        t = start - 1.0 + i * 0.0005 + rnd.random() * 0.0003  # behind the rig's clock
        symbol = SYMBOLS[i % len(SYMBOLS)]
        kind = rnd.random()
        length = rnd.choice((3, 12, 30, 60)) if kind < 0.15 else 60
        step = rnd.choice((0.003, -0.003, 0.0004, -0.0004, 0.0))
        noise = rnd.choice((0.0005, 0.002))
        p = 100.0 + 50 * rnd.random()
        prices = []
        for _ in range(length):
            p *= 1 + step + rnd.gauss(0.0, noise)
            prices.append(round(p, 4))
        if rnd.random() < 0.05:
            prices[-1] = round(prices[-1] * 1.05, 4)  # a bad print
        posture = rnd.choice(list(PARAMS))
        pos = None
        if rnd.random() < 0.3:
            qty = rnd.choice((10.0, -10.0, 500.0, -500.0))
            pos = PositionView(symbol=symbol, qty=qty, avg_price=prices[-1], posture=posture)
        mode = rnd.choice(
            (TradingMode.NORMAL,) * 8 + (TradingMode.LIMITED, TradingMode.SAFE)  # type: ignore[operator]
        )
        event = MarketEvent(
            event_id=f"ev-{i:08d}",
            symbol=symbol,
            price=prices[-1],
            ts=t,
            headline="guidance raised" if rnd.random() < 0.05 else "",
            stamps={T0: t, CONTEXT: t + 0.0005},
        )
        out.append(
            Context(
                event_id=event.event_id,
                stamps=event.stamps,
                event=event,
                symbol=symbol,
                prices=prices,
                price_age_s=0.2,
                stale=rnd.random() < 0.03,
                position=pos,
                open_positions=rnd.choice((0, 1, 2, 5)),
                capital=100_000.0,
                posture=posture,
                params=PARAMS[posture],
                mode=mode,
                session_id="s-1",
                indicators=rules.compute(prices),
            )
        )
    return out


def run(
    ctxs: list[Context], *, step: float = 0.001, failures: bool = True, keep: bool = True
) -> RolesRig:
    """Drive `ctxs` through the three roles; every 17th event's analysis times out and
    every 23rd's verifier fails (when `failures`), so those records are covered too."""
    rig = RolesRig(keep=keep)
    commander = rig.actors[COMMANDER]
    for i, ctx in enumerate(ctxs):
        rig.clock.advance(step)
        if failures and i % 17 == 5:
            rig.tell(COMMANDER, ctx)
            rig.tell(VERIFIER, ctx)
            rig.clock.advance(step)
            commander.on__StageTimeout(_StageTimeout(ctx.event_id, "analysis"))
            rig.pump()
        elif failures and i % 23 == 7:
            rig.tell(COMMANDER, ctx)
            rig.tell(ANALYST, ctx)
            rig.tell(
                COMMANDER,
                StageFailure(
                    role="verifier", event_id=ctx.event_id, reason="boom", ts=rig.clock.now()
                ),
            )
        else:
            rig.context(ctx)
    return rig
