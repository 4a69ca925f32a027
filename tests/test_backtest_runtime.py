"""The deterministic one-thread runtime (supervisors.inline) on its own: FIFO delivery,
asks answered inline, timers from the virtual clock, failures and restarts like on threads;
and the posture's forced defensive lifting on simulated time under it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from aegis_actors.cache import MemoryCache
from aegis_actors.messages import GetStatus, PositionClosed, VolatilityIndex
from aegis_actors.metrics import Metrics
from aegis_actors.posture import PostureActor
from aegis_actors.runtime import POSTURE, STORE, WATCHDOG, Runtime
from aegis_actors.settings import Settings
from supervisors import (
    ChildSpec,
    Directory,
    Policy,
    Strategy,
    SupervisedActor,
    VirtualClock,
    inline,
    start_tree,
)


class Echo(SupervisedActor):
    """Records what it receives; 'ask:<name>' asks that actor; 'boom' fails the tell."""

    log: list[tuple[str, Any]] = []

    def on_receive(self, message: Any) -> Any:
        Echo.log.append((self.ctx.name, message))
        if message == "boom":
            raise RuntimeError("boom")
        if isinstance(message, str) and message.startswith("ask:"):
            return self.ctx.directory.ask(message[4:], "ping", timeout=1.0)
        if isinstance(message, str) and message.startswith("tell:"):
            self.ctx.directory.tell(message[5:], f"from {self.ctx.name}")
        return f"{self.ctx.name} got {message}"


@pytest.fixture
def sched() -> Iterator[inline.Scheduler]:
    Echo.log = []
    with inline.install() as s:
        yield s


def echo_tree(clock: VirtualClock, *names: str) -> Any:
    specs = [ChildSpec(n, lambda ctx: Echo.start(ctx)) for n in names]
    return start_tree("root", specs, Policy(strategy=Strategy.ONE_FOR_ONE), clock=clock)


def test_fifo_delivery_and_inline_asks(sched: inline.Scheduler) -> None:
    clock = VirtualClock()
    root = echo_tree(clock, "a", "b")
    d = root.directory
    d.tell("a", "tell:b")
    d.tell("b", "first")
    assert Echo.log == []  # nothing runs until the scheduler does
    sched.run()
    assert Echo.log == [("a", "tell:b"), ("b", "first"), ("b", "from a")]
    Echo.log.clear()
    d.tell("b", "queued")
    assert d.ask("a", "ask:b", timeout=1.0) == "b got ping"  # b's queue delivered first
    assert Echo.log == [("a", "ask:b"), ("b", "queued"), ("b", "ping")]
    assert sched.run() == 0  # the inline ask spent those messages' run tokens
    root.stop()


class Recorder(Echo):
    """An Echo the scheduler may hold back (a store's part)."""


def test_a_held_recorder_runs_at_the_end_of_the_block_and_answers_asks_at_once() -> None:
    """Inside `holding()` a deferred actor's messages wait (the others run), then run in
    their order when the block ends; an ask to it delivers what was queued first."""
    Echo.log = []
    with inline.install(inline.Scheduler(deferred=(Recorder,))) as sched:
        clock = VirtualClock()
        specs = [
            ChildSpec("a", lambda ctx: Echo.start(ctx)),
            ChildSpec("rec", lambda ctx: Recorder.start(ctx)),
        ]
        root = start_tree("root", specs, Policy(strategy=Strategy.ONE_FOR_ONE), clock=clock)
        d = root.directory
        with sched.holding():
            d.tell("a", "tell:rec")
            d.tell("rec", "w1")
            sched.run()
            assert Echo.log == [("a", "tell:rec")]  # rec's writes wait
            assert d.ask("a", "ask:rec", timeout=1.0) == "rec got ping"
            assert Echo.log[1:] == [
                ("a", "ask:rec"),
                ("rec", "w1"),
                ("rec", "from a"),
                ("rec", "ping"),
            ]
            d.tell("rec", "w2")
            sched.run()
            assert Echo.log[-1] == ("rec", "ping")
        assert Echo.log[-1] == ("rec", "w2")  # delivered when the block ended
        assert sched.idle()
        root.stop()


def test_held_messages_wait_over_blocks_until_enough_wait_or_an_ask_takes_them() -> None:
    """`holding(until=n)`: a recorder's messages outlast the block until n wait; an ask to
    it still delivers them first, and a `run()` outside a block delivers the rest."""
    Echo.log = []
    with inline.install(inline.Scheduler(deferred=(Recorder,))) as sched:
        clock = VirtualClock()
        root = start_tree(
            "root",
            [ChildSpec("rec", lambda ctx: Recorder.start(ctx))],
            Policy(strategy=Strategy.ONE_FOR_ONE),
            clock=clock,
        )
        d = root.directory
        with sched.holding(until=3):
            d.tell("rec", "w1")
        with sched.holding(until=3):
            d.tell("rec", "w2")
        assert Echo.log == [] and not sched.idle()  # two blocks over: still waiting
        with sched.holding(until=3):
            assert d.ask("rec", "read", timeout=1.0) == "rec got read"
        assert [m for _, m in Echo.log] == ["w1", "w2", "read"]
        with sched.holding(until=2):
            d.tell("rec", "w3")
            d.tell("rec", "w4")
        assert [m for _, m in Echo.log][3:] == ["w3", "w4"]  # two wait: delivered
        with sched.holding(until=2):
            d.tell("rec", "w5")
        assert len(Echo.log) == 5
        sched.run()
        assert Echo.log[-1] == ("rec", "w5") and sched.idle()
        root.stop()


def test_an_ask_that_would_deadlock_times_out_at_once(sched: inline.Scheduler) -> None:
    clock = VirtualClock()
    root = echo_tree(clock, "a")
    with pytest.raises(pykka.Timeout):
        root.directory.ask("a", "ask:a", timeout=1.0)  # a asking itself
    root.stop()


def test_failed_tell_restarts_the_child_on_the_virtual_clock(sched: inline.Scheduler) -> None:
    clock = VirtualClock()
    root = echo_tree(clock, "a")
    first = root.directory.get("a")
    root.directory.tell("a", "boom")
    root.directory.tell("a", "after")  # held while a restarts, then delivered
    sched.run()
    sched.advance_to(clock, clock.now() + 5.0)  # the restart backoff elapses
    second = root.directory.get("a")
    assert second is not None and second is not first
    assert ("a", "after") in Echo.log
    root.stop()


def test_forced_defensive_lifts_on_simulated_time_without_vix(sched: inline.Scheduler) -> None:
    clock = VirtualClock()
    rt = Runtime(
        settings=Settings(posture={"forced_cooldown_s": 3600.0}),
        clock=clock,
        directory=Directory(),
        cache=MemoryCache(),
        metrics=Metrics(),
    )
    specs = [
        ChildSpec(STORE, lambda ctx: Echo.start(ctx)),
        ChildSpec(WATCHDOG, lambda ctx: Echo.start(ctx)),
        ChildSpec(POSTURE, lambda ctx: PostureActor.start(ctx, rt)),
    ]
    root = start_tree(
        "root",
        specs,
        Policy(strategy=Strategy.ONE_FOR_ONE),
        clock=clock,
        directory=rt.directory,
    )
    d = rt.directory
    for _ in range(3):
        d.tell(POSTURE, PositionClosed(symbol="X", reason="stop_loss", pnl=-1, pnl_pct=-1, ts=0))
    sched.run()

    def posture() -> str:
        return str(d.ask(POSTURE, GetStatus(), timeout=1.0)["posture"])

    assert posture() == "defensive"
    sched.advance_to(clock, clock.now() + 1800.0)
    assert posture() == "defensive"  # inside the cool-down
    sched.advance_to(clock, clock.now() + 1800.0)
    assert posture() == "guerrilla"  # expired on the simulated clock, no VIX needed
    d.tell(POSTURE, VolatilityIndex(value=10.0, ts=clock.now()))
    sched.run()
    root.stop()


def test_actors_left_running_are_stopped_with_the_scheduler() -> None:
    """A start that fails half-way leaves no actor behind that nothing would ever run."""
    clock = VirtualClock()
    with inline.install():
        root = echo_tree(clock, "a", "b")
        a = root.directory.get("a")
        assert a is not None and a.is_alive()
    assert not a.is_alive()
    assert root.wait(0)


def test_the_json_log_is_written_on_the_replay_thread(tmp_path: Any) -> None:
    """On the deterministic runtime the JSON sink has no writer thread (a hand-off of the
    interpreter lock per line cost more than the line): lines are written in order, on
    the caller's thread, and are all in the file after `flush`."""
    import json
    import threading

    from aegis_actors.logs import configure, flush, logger
    from supervisors import inline

    with inline.install():
        path = configure(tmp_path / "logs", stderr=False)
        writers = [t for t in threading.enumerate() if t.name == "aegis-jsonlog"]
        for i in range(3):
            logger.bind(actor="replay").info("line {}", i)
        flush()
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert writers == []
    assert [x["msg"] for x in lines if x["actor"] == "replay"] == ["line 0", "line 1", "line 2"]
    configure(tmp_path / "after", stderr=False)  # the threaded sink again for what follows
    assert any(t.name == "aegis-jsonlog" for t in threading.enumerate())
