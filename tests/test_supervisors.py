"""Behaviour of supervision trees: strategies, restart types, intensity, backoff, directory."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest

from supervisors import (
    Backoff,
    ChildContext,
    ChildExited,
    ChildSpec,
    Directory,
    Policy,
    Restart,
    RootHandle,
    Strategy,
    SupervisedActor,
    Supervisor,
    VirtualClock,
    start_tree,
    supervisor_spec,
)

NO_BACKOFF = Backoff(initial_s=0.0, jitter=0.0)


def wait_until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    """Poll a condition against a real deadline (time itself is virtual in these tests)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(0.002)


@pytest.fixture(autouse=True)
def _no_leaked_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@dataclass
class Rec:
    """Shared, append-only record of what the children did."""

    log: list[tuple[str, str]] = field(default_factory=list)
    got: list[tuple[str, str, Any]] = field(default_factory=list)
    crashes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *item: str) -> None:
        with self.lock:
            self.log.append((item[0], item[1]))

    def of(self, name: str) -> list[Any]:
        with self.lock:
            return [m for n, _, m in self.got if n == name]


class Worker(SupervisedActor):
    def __init__(self, ctx: ChildContext, rec: Rec, fail_start: Callable[[], bool]) -> None:
        super().__init__(ctx)
        self.rec = rec
        self.fail_start = fail_start

    def on_start(self) -> None:
        self.rec.add("start", self.ctx.name)
        if self.fail_start():
            raise RuntimeError("cannot start")

    def on_stop(self) -> None:
        self.rec.add("stop", self.ctx.name)

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            with self.rec.lock:
                self.rec.crashes += 1
            raise RuntimeError(f"{self.ctx.name} crashed")
        if message == "sysexit":
            raise SystemExit(3)
        if message == "stop":
            self.stop()
            return None
        if message == "ping":
            return self.actor_urn
        with self.rec.lock:
            self.rec.got.append((self.ctx.name, self.actor_urn, message))
        return None


def worker(
    name: str,
    rec: Rec,
    restart: Restart = Restart.PERMANENT,
    fail_start: Callable[[], bool] = lambda: False,
    shutdown_timeout_s: float = 5.0,
) -> ChildSpec:
    return ChildSpec(
        name,
        lambda ctx: Worker.start(ctx, rec, fail_start),
        restart=restart,
        shutdown_timeout_s=shutdown_timeout_s,
    )


def tree(
    children: list[ChildSpec],
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 10,
    backoff: Backoff = NO_BACKOFF,
    clock: VirtualClock | None = None,
    events: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> RootHandle:
    policy = Policy(strategy, max_restarts=max_restarts, within_s=60.0, backoff=backoff)
    sink = events.append if events is not None else None
    return start_tree("root", children, policy, clock=clock or VirtualClock(), on_event=sink, **kw)


def urn(handle: RootHandle, name: str) -> str | None:
    ref = handle.directory.get(name)
    return None if ref is None else ref.actor_urn


def restarted_from(handle: RootHandle, name: str, before: str | None) -> Callable[[], bool]:
    return lambda: urn(handle, name) not in (None, before)


def crash_and_wait(handle: RootHandle, name: str) -> None:
    before = urn(handle, name)
    assert handle.directory.tell(name, "crash")
    wait_until(lambda: urn(handle, name) not in (None, before), what=f"{name} restart")


def child_snap(handle: RootHandle, name: str) -> dict[str, Any]:
    def find(node: dict[str, Any]) -> dict[str, Any] | None:
        for c in node.get("children", []):
            if c["name"] == name:
                return c
            hit = find(c)
            if hit is not None:
                return hit
        return None

    found = find(handle.snapshot())
    assert found is not None, name
    return found


# -- order -------------------------------------------------------------------------------


def test_start_in_order_stop_in_reverse() -> None:
    rec = Rec()
    handle = tree([worker(n, rec) for n in "abc"])
    assert rec.log == [("start", "a"), ("start", "b"), ("start", "c")]
    handle.stop()
    assert handle.wait(0)
    assert rec.log[3:] == [("stop", "c"), ("stop", "b"), ("stop", "a")]
    assert not handle.exhausted
    assert handle.directory.names() == []


# -- strategies --------------------------------------------------------------------------


def test_one_for_one_restarts_only_the_failed_child() -> None:
    rec = Rec()
    handle = tree([worker(n, rec) for n in "abc"])
    a, c = urn(handle, "a"), urn(handle, "c")
    crash_and_wait(handle, "b")
    assert (urn(handle, "a"), urn(handle, "c")) == (a, c)
    assert rec.log[3:] == [("start", "b")]
    assert child_snap(handle, "b")["restarts"] == 1
    handle.stop()


def test_one_for_all_restarts_everyone_in_order() -> None:
    rec = Rec()
    handle = tree([worker(n, rec) for n in "abc"], Strategy.ONE_FOR_ALL)
    old = {n: urn(handle, n) for n in "abc"}
    crash_and_wait(handle, "b")
    wait_until(lambda: all(urn(handle, n) not in (None, old[n]) for n in "abc"))
    # b died on its own; c and a are stopped in reverse order, then all start in order.
    assert rec.log[3:] == [
        ("stop", "c"),
        ("stop", "a"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]
    snap = handle.snapshot()
    assert [c["restarts"] for c in snap["children"]] == [1, 1, 1]
    assert snap["restarts"] == 1
    handle.stop()


def test_rest_for_one_restarts_the_failed_child_and_later_siblings() -> None:
    rec = Rec()
    handle = tree([worker(n, rec) for n in "abc"], Strategy.REST_FOR_ONE)
    old = {n: urn(handle, n) for n in "abc"}
    crash_and_wait(handle, "b")
    wait_until(lambda: urn(handle, "c") not in (None, old["c"]))
    assert urn(handle, "a") == old["a"]
    assert rec.log[3:] == [("stop", "c"), ("start", "b"), ("start", "c")]
    handle.stop()


def test_one_for_all_drops_temporary_siblings() -> None:
    rec = Rec()
    handle = tree(
        [worker("a", rec), worker("t", rec, Restart.TEMPORARY), worker("c", rec)],
        Strategy.ONE_FOR_ALL,
    )
    old_c = urn(handle, "c")
    crash_and_wait(handle, "a")
    wait_until(lambda: urn(handle, "c") not in (None, old_c))
    assert child_snap(handle, "t")["state"] == "stopped"
    assert handle.directory.tell("t", "hello") is False
    handle.stop()


# -- restart types -----------------------------------------------------------------------


def test_restart_types_on_abnormal_exit() -> None:
    rec = Rec()
    handle = tree(
        [
            worker("p", rec, Restart.PERMANENT),
            worker("tr", rec, Restart.TRANSIENT),
            worker("tmp", rec, Restart.TEMPORARY),
        ]
    )
    crash_and_wait(handle, "p")
    crash_and_wait(handle, "tr")
    handle.directory.tell("tmp", "crash")
    wait_until(lambda: child_snap(handle, "tmp")["state"] == "failed")
    assert handle.directory.get("tmp") is None
    assert "tmp" not in handle.directory.names()
    snap = child_snap(handle, "tmp")
    assert snap["restarts"] == 0
    assert "tmp crashed" in snap["last_failure"]["reason"]
    handle.stop()


def test_self_stop_restarts_permanent_but_not_transient() -> None:
    rec = Rec()
    events: list[dict[str, Any]] = []
    handle = tree(
        [worker("perm", rec, Restart.PERMANENT), worker("trans", rec, Restart.TRANSIENT)],
        events=events,
    )
    before = urn(handle, "perm")
    handle.directory.tell("perm", "stop")
    wait_until(lambda: urn(handle, "perm") not in (None, before))
    handle.directory.tell("trans", "stop")
    wait_until(lambda: child_snap(handle, "trans")["state"] == "stopped")
    assert child_snap(handle, "trans")["last_failure"] is None
    assert child_snap(handle, "trans")["restarts"] == 0
    exits = [e for e in events if e["type"] == "supervisor.child_exit"]
    assert [(e["child"], e["reason"]) for e in exits] == [("perm", "normal"), ("trans", "normal")]
    assert handle.directory.tell("trans", "x") is False
    handle.stop()


def test_on_start_failure_is_detected_and_restarted() -> None:
    rec = Rec()
    attempts = iter([True, True, False])  # fail twice, then come up
    events: list[dict[str, Any]] = []
    handle = tree([worker("flaky", rec, fail_start=lambda: next(attempts))], events=events)
    wait_until(lambda: child_snap(handle, "flaky")["restarts"] == 2)
    wait_until(lambda: handle.directory.get("flaky") is not None)
    assert [e["reason"] for e in events if e["type"] == "supervisor.child_exit"] == [
        "RuntimeError: cannot start"
    ] * 2
    handle.stop()


def test_factory_failure_counts_and_exhausts() -> None:
    def broken(ctx: ChildContext) -> pykka.ActorRef[Any]:
        raise OSError("no such thing")

    exhausted: list[str] = []
    handle = tree([ChildSpec("broken", broken)], max_restarts=3, on_exhausted=exhausted.append)
    assert handle.wait(5)
    assert handle.exhausted and exhausted == ["root"]


def test_system_exit_in_child_does_not_stop_other_actors() -> None:
    rec = Rec()
    handle = tree([worker("a", rec), worker("b", rec)])
    b = urn(handle, "b")
    before = urn(handle, "a")
    handle.directory.tell("a", "sysexit")
    wait_until(lambda: urn(handle, "a") not in (None, before))
    assert urn(handle, "b") == b
    assert handle.ref.is_alive()
    handle.stop()


def test_on_stop_failure_counts_as_abnormal() -> None:
    class BadStop(SupervisedActor):
        def on_stop(self) -> None:
            raise ValueError("dirty shutdown")

        def on_receive(self, message: Any) -> Any:
            self.stop()

    handle = tree([ChildSpec("bad", lambda ctx: BadStop.start(ctx), restart=Restart.TRANSIENT)])
    before = urn(handle, "bad")
    handle.directory.tell("bad", "go")
    wait_until(lambda: urn(handle, "bad") not in (None, before))
    assert "dirty shutdown" in child_snap(handle, "bad")["last_failure"]["reason"]
    handle.stop()


# -- intensity and escalation -------------------------------------------------------------


def test_escalation_two_levels_up() -> None:
    rec = Rec()
    events: list[dict[str, Any]] = []
    middle_gave_up: list[str] = []
    root_gave_up: list[str] = []
    middle = supervisor_spec(
        "middle",
        [worker("leaf", rec)],
        Policy(max_restarts=2, within_s=60.0, backoff=NO_BACKOFF),
        on_exhausted=middle_gave_up.append,
    )
    handle = tree(
        [middle, worker("sibling", rec)],
        max_restarts=1,
        events=events,
        on_exhausted=root_gave_up.append,
    )
    sibling = urn(handle, "sibling")
    middle_urn = urn(handle, "middle")
    for _ in range(3):  # the third restart is one too many for the middle supervisor
        crash_and_wait(handle, "leaf")
    assert middle_gave_up == ["root/middle"]
    assert urn(handle, "middle") != middle_urn  # the root restarted the middle one
    assert urn(handle, "sibling") == sibling  # one_for_one at the root
    snap = handle.snapshot()
    assert snap["restarts"] == 1
    mid = snap["children"][0]
    assert mid["kind"] == "supervisor" and mid["restarted"] == 1 and mid["state"] == "running"
    assert mid["children"][0]["state"] == "running"
    assert [e["supervisor"] for e in events if e["type"] == "supervisor.escalation"] == [
        "root/middle"
    ]
    assert not handle.wait(0)

    for _ in range(2):
        crash_and_wait(handle, "leaf")
    handle.directory.tell("leaf", "crash")  # middle gives up again; so does the root
    assert handle.wait(5)
    assert handle.exhausted
    assert root_gave_up == ["root"]
    assert middle_gave_up == ["root/middle", "root/middle"]
    assert handle.directory.tell("leaf", "late") is False
    assert handle.snapshot()["state"] == "exhausted"
    wait_until(lambda: pykka.ActorRegistry.get_all() == [], what="all actors gone")


def test_restarts_outside_the_window_do_not_exhaust() -> None:
    rec = Rec()
    clock = VirtualClock()
    handle = tree([worker("w", rec)], max_restarts=2, clock=clock)
    for _ in range(5):
        crash_and_wait(handle, "w")
        clock.advance(61.0)
    assert child_snap(handle, "w")["restarts"] == 5
    assert not handle.wait(0)
    handle.stop()


# -- backoff -----------------------------------------------------------------------------


def test_backoff_waits_on_the_clock() -> None:
    rec = Rec()
    clock = VirtualClock()
    backoff = Backoff(initial_s=1.0, max_s=3.0, jitter=0.5, factor=2.0)
    handle = tree([worker("w", rec)], backoff=backoff, clock=clock, rng=random.Random(7))
    model = random.Random(7)
    for n in (1, 2, 3, 4):
        expected = backoff.delay(n, model)
        assert 0.5 * min(3.0, 2 ** (n - 1)) <= expected <= 1.5 * min(3.0, 2 ** (n - 1))
        before = urn(handle, "w")
        t0 = clock.now()
        handle.directory.tell("w", "crash")
        wait_until(lambda: clock.next_timer() is not None, what="backoff timer")
        assert clock.next_timer() == pytest.approx(t0 + expected)
        clock.advance_to(t0 + expected - 0.01)
        assert child_snap(handle, "w")["state"] == "restarting"
        assert handle.directory.get("w") is None
        clock.advance_to(t0 + expected)
        wait_until(restarted_from(handle, "w", before), what="restart")
    handle.stop()


def test_child_fails_while_another_is_restarting() -> None:
    rec = Rec()
    clock = VirtualClock()
    backoff = Backoff(initial_s=1.0, jitter=0.0)
    handle = tree([worker(n, rec) for n in "abc"], backoff=backoff, clock=clock)
    c = urn(handle, "c")
    handle.directory.tell("a", "crash")
    wait_until(lambda: child_snap(handle, "a")["state"] == "restarting")
    clock.advance(0.5)
    handle.directory.tell("b", "crash")
    wait_until(lambda: child_snap(handle, "b")["state"] == "restarting")
    clock.advance(0.5)  # a is due, b is not
    wait_until(lambda: handle.directory.get("a") is not None)
    assert child_snap(handle, "b")["state"] == "restarting"
    clock.advance(0.5)
    wait_until(lambda: handle.directory.get("b") is not None)
    assert urn(handle, "c") == c
    handle.stop()


def test_rest_for_one_regroups_a_restart_already_waiting() -> None:
    rec = Rec()
    clock = VirtualClock()
    backoff = Backoff(initial_s=1.0, jitter=0.0)
    handle = tree(
        [worker(n, rec) for n in "ab"], Strategy.REST_FOR_ONE, backoff=backoff, clock=clock
    )
    handle.directory.tell("b", "crash")
    wait_until(lambda: child_snap(handle, "b")["state"] == "restarting")
    handle.directory.tell("a", "crash")
    wait_until(lambda: child_snap(handle, "a")["state"] == "restarting")
    clock.advance(1.0)  # b's own timer was superseded by a's group restart
    wait_until(lambda: all(handle.directory.get(n) is not None for n in "ab"))
    assert rec.log[2:] == [("start", "a"), ("start", "b")]
    handle.stop()


# -- directory ---------------------------------------------------------------------------


def test_messages_to_a_restarting_child_reach_the_new_instance_in_order() -> None:
    rec = Rec()
    clock = VirtualClock()
    handle = tree([worker("acc", rec)], backoff=Backoff(1.0, jitter=0.0), clock=clock)
    old = urn(handle, "acc")
    handle.directory.tell("acc", "crash")
    wait_until(lambda: child_snap(handle, "acc")["state"] == "restarting")
    assert all(handle.directory.tell("acc", i) for i in range(100))
    assert rec.of("acc") == []
    clock.advance(1.0)
    wait_until(lambda: len(rec.of("acc")) == 100)
    assert rec.of("acc") == list(range(100))
    assert {u for _, u, _ in rec.got} == {urn(handle, "acc")} != {old}
    assert handle.directory.dead_letters == {}
    handle.stop()


def test_tells_racing_a_crash_are_requeued_not_dropped() -> None:
    rec = Rec()
    handle = tree([worker("acc", rec)], max_restarts=100)
    for round_ in range(20):
        handle.directory.tell("acc", "crash")
        for i in range(25):  # many land in the dying instance's inbox
            assert handle.directory.tell("acc", (round_, i))
    wait_until(lambda: len(rec.of("acc")) == 500)
    assert rec.of("acc") == [(r, i) for r in range(20) for i in range(25)]
    assert rec.crashes == 20
    handle.stop()


def test_dead_letters_are_counted_and_logged_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    rec = Rec()
    seen: list[tuple[str, Any]] = []
    directory = Directory(hold_limit=5, on_dead_letter=lambda n, m: seen.append((n, m)))
    handle = tree([worker("tmp", rec, Restart.TEMPORARY)], directory=directory)
    handle.directory.tell("tmp", "crash")
    wait_until(lambda: child_snap(handle, "tmp")["state"] == "failed")
    with caplog.at_level(logging.WARNING, logger="supervisors"):
        assert [directory.tell("tmp", i) for i in range(50)] == [False] * 50
        assert directory.tell("nobody", "x") is False
    assert directory.dead_letters == {"tmp": 50, "nobody": 1}
    assert len(seen) == 51
    burst_logs = [r for r in caplog.records if "dead letters" in r.getMessage()]
    assert len(burst_logs) == 2  # one per name, not one per message
    handle.stop()


def test_directory_hold_is_bounded() -> None:
    directory = Directory(hold_limit=3)
    directory.declare("x", "r/x")
    assert [directory.tell("x", i) for i in range(5)] == [True, True, True, False, False]
    assert directory.dead_letters == {"x": 2}
    assert directory.names() == ["x"]
    with pytest.raises(LookupError):
        directory.ask("x", "ping", timeout=1)
    with pytest.raises(ValueError):
        directory.declare("x", "other/x")
    directory.mark_gone("r")
    assert directory.dead_letters == {"x": 5}
    assert directory.names() == []


def test_directory_ask_and_names() -> None:
    rec = Rec()
    handle = tree([worker("a", rec)])
    assert handle.directory.ask("a", "ping", timeout=2) == urn(handle, "a")
    assert handle.directory.names() == ["a", "root"]
    handle.stop()
    with pytest.raises(LookupError):
        handle.directory.ask("a", "ping", timeout=2)


def test_duplicate_names_in_one_supervisor_are_rejected() -> None:
    rec = Rec()
    with pytest.raises(ValueError):
        Supervisor(
            ChildContext("s", "s", Directory(), VirtualClock()),
            [worker("a", rec), worker("a", rec)],
            Policy(),
        )


# -- snapshot, operator restart, stale reports, shutdown --------------------------------


def test_snapshot_contents() -> None:
    rec = Rec()
    inner = supervisor_spec(
        "inner", [worker("leaf", rec)], Policy(Strategy.ONE_FOR_ALL, backoff=NO_BACKOFF)
    )
    handle = tree([worker("a", rec), inner], Strategy.REST_FOR_ONE)
    crash_and_wait(handle, "a")
    snap = handle.snapshot()
    assert {k: snap[k] for k in ("name", "path", "kind", "state", "strategy", "restarts")} == {
        "name": "root",
        "path": "root",
        "kind": "supervisor",
        "state": "running",
        "strategy": "rest_for_one",
        "restarts": 1,
    }
    assert snap["last_failure"]["reason"] == "RuntimeError: a crashed"
    a, inner_snap = snap["children"]
    assert a == {
        "name": "a",
        "path": "root/a",
        "kind": "actor",
        "state": "running",
        "restarts": 1,
        "last_failure": {"reason": "RuntimeError: a crashed", "ts": a["last_failure"]["ts"]},
    }
    assert inner_snap["path"] == "root/inner" and inner_snap["strategy"] == "one_for_all"
    assert inner_snap["restarted"] == 1  # rest_for_one took it down with a
    assert inner_snap["children"][0]["path"] == "root/inner/leaf"
    handle.stop()
    assert handle.snapshot()["state"] == "stopped"


def test_restart_child_counts_like_any_restart() -> None:
    rec = Rec()
    events: list[dict[str, Any]] = []
    handle = tree([worker("a", rec), worker("b", rec)], max_restarts=2, events=events)
    proxy = handle.ref.proxy()
    b = urn(handle, "b")
    for n in (1, 2):
        before = urn(handle, "a")
        proxy.restart_child("a").get(timeout=5)
        assert urn(handle, "a") not in (None, before)
        assert child_snap(handle, "a")["restarts"] == n
    assert urn(handle, "b") == b
    assert [e["reason"] for e in events if e["type"] == "supervisor.restart"] == ["operator"] * 2
    with pytest.raises(KeyError):
        proxy.restart_child("nope").get(timeout=5)
    proxy.restart_child("a").get(timeout=5)  # third within the window: too many
    assert handle.wait(5) and handle.exhausted


def test_stale_exit_reports_are_ignored() -> None:
    rec = Rec()
    handle = tree([worker("a", rec)])
    current = urn(handle, "a")
    handle.ref.tell(ChildExited("a", incarnation=-1, urn="old", reason=RuntimeError("old")))
    handle.ref.tell(ChildExited("ghost", incarnation=1, urn=None, reason=None))
    assert handle.snapshot()["restarts"] == 0
    assert urn(handle, "a") == current
    handle.stop()


def test_child_ignoring_its_shutdown_timeout_is_abandoned() -> None:
    release = threading.Event()

    class Stubborn(SupervisedActor):
        def on_stop(self) -> None:
            release.wait(10)

    events: list[dict[str, Any]] = []
    spec = ChildSpec("stubborn", lambda ctx: Stubborn.start(ctx), shutdown_timeout_s=0.05)
    handle = tree([spec], events=events)
    handle.stop(timeout=5)
    assert handle.wait(0)
    assert [e["child"] for e in events if e["type"] == "supervisor.child_abandoned"] == ["stubborn"]
    release.set()


# -- crash storm -------------------------------------------------------------------------


def test_crash_storm_leaves_no_zombie_threads() -> None:
    baseline = {t.ident for t in threading.enumerate()}
    rec = Rec()
    names = [f"w{i}" for i in range(6)]
    inner = supervisor_spec(
        "inner",
        [worker(n, rec) for n in names[3:]],
        Policy(Strategy.ONE_FOR_ALL, max_restarts=10_000, backoff=NO_BACKOFF),
    )
    handle = tree(
        [*(worker(n, rec) for n in names[:3]), inner],
        Strategy.ONE_FOR_ONE,
        max_restarts=10_000,
    )
    rng = random.Random(1)
    for _ in range(300):
        assert handle.directory.tell(rng.choice(names), "crash")
    wait_until(lambda: rec.crashes == 300, timeout=20, what="all crashes handled")
    wait_until(lambda: all(handle.directory.get(n) is not None for n in names))
    assert not handle.exhausted
    handle.stop()
    assert handle.wait(5)

    def extra() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.ident not in baseline]

    wait_until(lambda: extra() == [], what="threads to exit")
    assert pykka.ActorRegistry.get_all() == []


class _Inbox(pykka.ThreadingActor):
    def __init__(self, got: list[Any]) -> None:
        super().__init__()
        self.got = got

    def on_receive(self, message: Any) -> None:
        self.got.append(message)


def test_topics_reach_their_declared_subscribers_and_parents_come_from_paths() -> None:
    """A fan-out is declared once (subscribe) and sent once (publish); a dead subscriber
    is a counted dead letter, and a name's supervisor is read from its path."""
    d = Directory()
    got_a: list[Any] = []
    got_b: list[Any] = []
    ref_a, ref_b = _Inbox.start(got_a), _Inbox.start(got_b)
    d.register("a", "root/a", ref_a)
    d.register("b", "root/group/b", ref_b)
    d.subscribe("news", "a", "b")
    d.subscribe("news", "a")  # declared twice: still once
    assert d.subscribers("news") == ("a", "b")
    assert d.publish("news", "hello") == 2
    assert d.publish("nobody-listens", "x") == 0
    ref_a.ask("sync"), ref_b.ask("sync")
    assert got_a[0] == "hello" and got_b[0] == "hello"
    d.mark_gone("root/a")
    assert d.publish("news", "again") == 1 and d.dead_letters == {"a": 1}
    assert d.parent("b") == "group" and d.parent("a") == "root" and d.parent("zz") is None
    ref_a.stop()
    ref_b.stop()
