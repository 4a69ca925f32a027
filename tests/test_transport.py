"""The transport between actors: tells batched per mailbox turn, handled one by one.

A busy actor's tells leave as one Batch per receiver when its mailbox is empty (or
before it answers an ask); the receiver handles each message as if it came alone; a
failure inside a batch requeues the rest for the restarted instance; a pipeline head
with `linger_s` sends fewer, fuller batches under load and a first message at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from aegis_actors.messages import CONTEXT, DONE, T0, EventDone, MarketEvent
from aegis_actors.runtime import MARKET, WATCHDOG
from supervisors import (
    Backoff,
    ChildContext,
    ChildSpec,
    Directory,
    Policy,
    RootHandle,
    SupervisedActor,
    VirtualClock,
    start_tree,
)
from supervisors.messages import Batch


class Sink(SupervisedActor):
    """Records every message and every mailbox turn; crashes on 'crash'."""

    def __init__(self, ctx: ChildContext, log: dict[str, list[Any]]) -> None:
        super().__init__(ctx)
        self.log = log

    def _handle_receive(self, message: Any) -> Any:
        self.log["turns"].append(len(message.messages) if type(message) is Batch else 1)
        return super()._handle_receive(message)

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("sink crashed")
        self.log["got"].append((self.actor_urn, message))
        return None


class Relay(SupervisedActor):
    """Posts what it is told to the sink; can be held on a gate to fill its mailbox."""

    def __init__(self, ctx: ChildContext, gate: threading.Event, linger_s: float) -> None:
        super().__init__(ctx)
        self.gate = gate
        self.linger_s = linger_s

    def on_receive(self, message: Any) -> Any:
        kind, value = message
        if kind == "hold":
            (value or self.gate).wait(10)
        elif kind == "post":
            for v in value:
                self.post("sink", v)
        elif kind == "ask":
            self.post("sink", value)
            return "answered"
        return None


def tree(log: dict[str, list[Any]], gate: threading.Event, linger_s: float = 0.0) -> RootHandle:
    children = [
        ChildSpec("sink", lambda ctx: Sink.start(ctx, log)),
        ChildSpec("relay", lambda ctx: Relay.start(ctx, gate, linger_s)),
    ]
    policy = Policy(max_restarts=10, within_s=60.0, backoff=Backoff(initial_s=0.0, jitter=0.0))
    return start_tree("root", children, policy, clock=VirtualClock())


@pytest.fixture
def log() -> dict[str, list[Any]]:
    return {"got": [], "turns": []}


def got(log: dict[str, list[Any]]) -> list[Any]:
    return [m for _, m in log["got"]]


@pytest.fixture
def gate() -> threading.Event:
    return threading.Event()  # a relay told ("hold", None) waits for it


@pytest.fixture
def directory(log: dict[str, list[Any]], gate: threading.Event) -> Iterator[Directory]:
    """The relay -> sink tree, stopped at the end of the test (a failed one included)."""
    handle = tree(log, gate)
    yield handle.directory
    gate.set()
    handle.stop()


def test_tells_posted_while_the_mailbox_is_busy_arrive_as_one_batch_in_order(
    log: dict[str, list[Any]], gate: threading.Event, directory: Directory
) -> None:
    d = directory
    d.tell("relay", ("hold", None))
    for i in range(10):  # they wait behind the gate: one drain, one batch
        d.tell("relay", ("post", [i]))
    gate.set()
    wait_until(lambda: len(got(log)) == 10)
    assert got(log) == list(range(10))
    assert log["turns"] == [10]  # ten messages, one mailbox turn at the sink
    d.tell("relay", ("post", ["alone"]))  # an idle relay sends at once, unbatched
    wait_until(lambda: len(got(log)) == 11)
    assert log["turns"] == [10, 1]


def test_an_answer_never_overtakes_the_tells_posted_before_it(
    log: dict[str, list[Any]], gate: threading.Event, directory: Directory
) -> None:
    d = directory
    relay = d.get("relay")
    sink = d.get("sink")
    assert relay is not None and sink is not None
    d.tell("relay", ("hold", None))
    future = relay.ask(("ask", "before the answer"), block=False)
    later = threading.Event()
    d.tell("relay", ("hold", later))  # queued behind the ask: no end-of-drain flush yet
    gate.set()
    assert future.get(timeout=10) == "answered"
    # in the sink's mailbox (or handled) when the asker sees the answer, while the
    # relay itself is still held
    assert sink.actor_inbox.qsize() > 0 or "before the answer" in got(log)
    later.set()


def test_a_failure_inside_a_batch_requeues_the_rest_for_the_next_instance(
    log: dict[str, list[Any]], directory: Directory
) -> None:
    d = directory
    first = d.get("sink")
    assert first is not None
    d.tell("relay", ("post", [1, 2, "crash", 3, 4]))  # one turn: one batch of five
    wait_until(lambda: len(got(log)) == 4)
    assert got(log) == [1, 2, 3, 4]
    urns = [u for u, _ in log["got"]]
    assert urns[0] == urns[1] == first.actor_urn != urns[2] == urns[3]
    assert d.dead_letters == {}


def test_a_lingering_head_sends_a_first_message_at_once_and_a_burst_in_one_batch(
    log: dict[str, list[Any]], gate: threading.Event
) -> None:
    handle = tree(log, gate, linger_s=0.5)
    d = handle.directory
    d.tell("relay", ("post", ["first"]))  # after a quiet spell: at once, not after 0.5 s
    wait_until(lambda: got(log) == ["first"], timeout=0.4)
    for i in range(20):  # a burst while busy: lingers, then one batch
        d.tell("relay", ("post", [i]))
    wait_until(lambda: len(got(log)) == 21)
    assert got(log) == ["first", *range(20)]
    assert log["turns"] == [1, 20]
    handle.stop()


def test_a_paced_burst_through_the_tree_keeps_per_event_stamps_and_counts_each_once(
    live_tree: Callable[..., Any], aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events enter in bursts, so the gateway batches them and every stage handles
    batches: each event still ends once (one EventDone at the watchdog), with its own
    stamps in order (detect <= context <= done), and the stamps within a batch differ."""
    symbols = [f"B{i:03d}" for i in range(30)]  # within the gateway's first window
    app = live_tree(
        feed={"symbols": symbols, "tick_interval_s": 3600.0, "dispatch_linger_ms": 20.0},
        risk={"max_orders_per_minute": 1_000_000},
    )
    rt = app.rt
    now = rt.clock.now()
    for s in symbols:
        for j in range(30):
            rt.cache.push_price(s, 100.0 * 1.001**j, now - 30 + j)
    seen: list[Any] = []
    batches: list[int] = []
    tell = rt.directory.tell

    def spy(name: str, message: Any) -> bool:
        if type(message) is Batch:
            batches.append(len(message.messages))
        if name == WATCHDOG:
            inner = message.messages if type(message) is Batch else (message,)
            seen.extend(m for m in inner if isinstance(m, EventDone))
        return tell(name, message)

    monkeypatch.setattr(rt.directory, "tell", spy)
    for i, s in enumerate(symbols):
        t = rt.clock.now()
        tell(
            MARKET,
            MarketEvent(event_id=f"ev-b-{i:03d}", symbol=s, price=100.0, ts=t, stamps={T0: t}),
        )
    m = rt.metrics
    wait_until(
        lambda: m.total("aegis_events_total") >= len(symbols), timeout=30, what="every event done"
    )
    assert sorted(d.event_id for d in seen) == [f"ev-b-{i:03d}" for i in range(len(symbols))]
    assert m.total("aegis_events_total") == len(symbols)  # counted once each
    assert max(batches) > 1  # the case under test happened: batches crossed the tree
    contexts = []
    for d in seen:
        st = d.stamps
        assert st[T0] <= st[CONTEXT] <= st[DONE], st
        contexts.append(st[CONTEXT])
    assert len(set(contexts)) == len(contexts)  # stamped one by one, not per batch
    assert m.total("aegis_restarts_total") == 0 and m.total("aegis_events_shed_total") == 0


class Fan(SupervisedActor):
    """Per message, posts to 'first', then 'second' and 'third' (the context loader: the
    commander, then the analyst and the verifier, whose answers go to the commander)."""

    def on_receive(self, message: Any) -> Any:
        if message == "hold":
            self.gate.wait(10)
            return None
        self.post("first", ("direct", message))
        self.post("second", ("via", message))
        self.post("third", ("via 3", message))
        return None

    def __init__(self, ctx: ChildContext, gate: threading.Event) -> None:
        super().__init__(ctx)
        self.gate = gate


class Tells(Directory):
    """A Directory that notes each tell: (to, what), a Batch as its messages."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, Any]] = []

    def tell(self, name: str, message: Any) -> bool:
        for m in message.messages if type(message) is Batch else (message,):
            self.sent.append((name, m))
        return super().tell(name, message)


def test_one_handlers_sends_keep_their_order_across_a_full_outbox(
    log: dict[str, list[Any]], gate: threading.Event
) -> None:
    """A turn that posts more than OUTBOX_MAX messages sends some mid-turn; still, what one
    handler sends to 'first' leaves before what it then sends to 'second' (which may
    answer 'first' at once: the answer must not arrive before what it answers)."""
    from supervisors.actor import OUTBOX_MAX

    directory = Tells()
    children = [
        ChildSpec("first", lambda ctx: Sink.start(ctx, log)),
        ChildSpec("second", lambda ctx: Sink.start(ctx, {"got": [], "turns": []})),
        ChildSpec("third", lambda ctx: Sink.start(ctx, {"got": [], "turns": []})),
        ChildSpec("fan", lambda ctx: Fan.start(ctx, gate)),
    ]
    handle = start_tree("root", children, Policy(), clock=VirtualClock(), directory=directory)
    try:
        n = OUTBOX_MAX * 2  # several mid-turn sends, at every phase of the pattern
        directory.tell("fan", "hold")
        for i in range(n):
            directory.tell("fan", i)
        gate.set()
        wait_until(lambda: len(got(log)) == n)
        order = [m for to, m in directory.sent if to in ("first", "second", "third")]
        for i in range(n):
            assert order.index(("direct", i)) < order.index(("via", i)), i
            assert order.index(("direct", i)) < order.index(("via 3", i)), i
    finally:
        gate.set()
        handle.stop()
