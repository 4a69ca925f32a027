"""The deterministic runtime: the same actor classes on one thread, for backtests.

Installed with `install()`, every `SupervisedActor` started meanwhile gets an inbox on this
scheduler instead of a thread. Messages are delivered in the global order they were sent
(one run queue, FIFO); `on_start` runs inline in `start()`; an ask is answered inline by
delivering the asked actor's queued messages up to the ask (an ask to an actor that is on
the call stack cannot be answered and times out at once, as it would deadlock on threads);
timers come from the virtual clock, each due time's work run to completion before the next
(`advance_to`). Nothing polls or sleeps: the work of a step is done when `run()` returns,
that is when the run queue is empty. The threaded pykka runtime stays for live runs.

A tell from a foreign thread (an HTTP worker) is queued too; `wait_external` blocks on it.

An actor of a `deferred` class (a recorder: the store) may be held back: inside
`holding()` its messages wait until the block ends, then are delivered in their order, so
its drain is one batch (one transaction for many writes, not one per write); with `until`
they go on waiting over the next blocks until that many wait. An ask to it is still
answered at once, every message queued before the ask delivered first.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from pykka import Future, Timeout, messages

if TYPE_CHECKING:
    from pykka._envelope import Envelope
    from pykka._future import GetHookFunc
    from pykka._types import OptExcInfo

    from supervisors.clock import VirtualClock

__all__ = ["InlineFuture", "InlineInbox", "Scheduler", "current", "install"]


class InlineActor(Protocol):
    """What the scheduler needs of an actor: pykka's loop pieces plus the exit report."""

    actor_inbox: Any
    actor_stopped: threading.Event

    @property
    def actor_ref(self) -> Any: ...

    def _actor_loop_setup(self) -> None: ...
    def _handle_receive(self, message: Any) -> Any: ...
    def _handle_failure(self, *exc_info: Any) -> None: ...
    def on_failure(self, *exc_info: Any) -> None: ...
    def _inline_exit(self) -> None: ...


_current: Scheduler | None = None


def current() -> Scheduler | None:
    """The installed deterministic scheduler, or None for the threaded runtime."""
    return _current


@contextmanager
def install(scheduler: Scheduler | None = None) -> Iterator[Scheduler]:
    """Actors started inside this block run on `scheduler` (one thread, deterministic)."""
    global _current
    if _current is not None:
        raise RuntimeError("a deterministic scheduler is already installed")
    sched = scheduler or Scheduler()
    _current = sched
    try:
        yield sched
    finally:
        try:
            sched.shutdown()  # none may outlive its scheduler: nothing would run it
        finally:
            _current = None


class InlineInbox:
    """One actor's FIFO; each put also queues one run token on the scheduler."""

    __slots__ = ("actor", "busy", "deferred", "queue", "sched", "skip")

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.queue: deque[Envelope[Any]] = deque()
        self.actor: InlineActor | None = None
        self.busy = False  # on the call stack: an ask to it would deadlock
        self.skip = 0  # messages taken inline by an ask: their run tokens are spent
        self.deferred = False  # its tokens wait while the scheduler is holding

    def put(self, envelope: Envelope[Any], /) -> None:
        reply_to = envelope.reply_to
        if reply_to is not None and isinstance(reply_to, InlineFuture):
            reply_to._inbox = self
        self.queue.append(envelope)
        self.sched._ready(self)

    def get(self) -> Envelope[Any]:
        return self.queue.popleft()

    def empty(self) -> bool:
        return not self.queue


class _Result:
    __slots__ = ("exc_info", "value")

    def __init__(self, value: Any = None, exc_info: OptExcInfo | None = None) -> None:
        self.value = value
        self.exc_info = exc_info


class InlineFuture(Future[Any]):
    """A future whose `get` delivers the asked actor's messages until it is answered."""

    def __init__(self) -> None:
        super().__init__()
        self._result: _Result | None = None
        self._inbox: InlineInbox | None = None

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if self._result is None:
            _resolve(self)
        result = self._result
        assert result is not None
        if result.exc_info is not None:
            exc_type, exc_value, tb = result.exc_info
            assert exc_type is not None
            if exc_value is None:
                exc_value = exc_type()
            raise exc_value.with_traceback(tb)
        return result.value

    def set(self, value: Any | None = None) -> None:
        if self._result is not None or self._get_hook is not None:
            raise RuntimeError("future already set")
        self._result = _Result(value)

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        if self._result is not None or self._get_hook is not None:
            raise RuntimeError("future already set")
        self._result = _Result(exc_info=exc_info)

    def set_get_hook(self, func: GetHookFunc[Any]) -> None:
        if self._result is not None:
            raise RuntimeError("future already set")
        super().set_get_hook(func)


def _resolve(future: InlineFuture) -> None:
    inbox = future._inbox
    if inbox is None or inbox.actor is None:
        raise Timeout("no actor will answer this future")
    if inbox.busy:
        raise Timeout(f"{inbox.actor} is busy up the call stack: the ask would deadlock")
    inbox.sched._drain_until(inbox, future)


class Scheduler:
    """One run queue of inbox tokens, in send order; see the module docstring."""

    def __init__(self, deferred: tuple[type, ...] = ()) -> None:
        self._run: deque[InlineInbox] = deque()
        self._later: deque[InlineInbox] = deque()  # tokens of deferred actors
        self._deferred = deferred
        self._hold = False
        self._owner = threading.get_ident()
        self._cond = threading.Condition()
        self._inboxes: list[InlineInbox] = []
        self.delivered = 0  # messages handled (a figure for benches)

    # -- what pykka calls (through SupervisedActor) ------------------------------------

    def new_inbox(self) -> InlineInbox:
        inbox = InlineInbox(self)
        self._inboxes.append(inbox)
        return inbox

    @staticmethod
    def new_future() -> InlineFuture:
        return InlineFuture()

    def start(self, actor: InlineActor) -> None:
        """Run `on_start` now, on this thread; a failed start ends the actor at once."""
        inbox: InlineInbox = actor.actor_inbox
        inbox.actor = actor
        inbox.deferred = isinstance(actor, self._deferred)
        inbox.busy = True
        try:
            actor._actor_loop_setup()
        except BaseException:  # SystemExit from on_start: pykka only catches Exception
            actor._handle_failure(*sys.exc_info())
        finally:
            inbox.busy = False
        if actor.actor_stopped.is_set():
            self._finish(inbox)

    # -- driving -----------------------------------------------------------------------

    def run(self) -> int:
        """Deliver queued messages in order until none is left; how many were delivered."""
        run, later = self._run, self._later
        n = 0
        while run or (later and not self._hold):
            inbox = run.popleft() if run else later.popleft()
            if inbox.skip:
                inbox.skip -= 1
                continue
            if not inbox.queue or inbox.actor is None:
                continue
            self._deliver(inbox, inbox.queue.popleft())
            n += 1
        self.delivered += n
        return n

    def idle(self) -> bool:
        return not self._run and not self._later

    @contextmanager
    def holding(self, until: int = 0) -> Iterator[None]:
        """Deferred actors' messages wait until the block ends, then run (one batch); with
        `until`, only once that many wait: else they wait for the next block's end, an
        ask to their actor, or a `run()` outside a block."""
        self._hold = True
        try:
            yield
        finally:
            self._hold = False
        if len(self._later) >= until:
            self.run()

    def shutdown(self) -> None:
        """Stop every actor still alive on this scheduler (newest first), e.g. after a
        start that failed half-way; their queued messages are handled first, as on stop."""
        self._inboxes = [i for i in self._inboxes if i.actor is not None]
        for inbox in reversed(self._inboxes):
            actor = inbox.actor
            if actor is not None and not actor.actor_stopped.is_set():
                actor.actor_ref.tell(messages._ActorStop())
        self.run()
        self._inboxes.clear()

    def advance_to(self, clock: VirtualClock, when: float) -> None:
        """Move the clock to `when`: every timer due by then fires (in time order), then
        their work runs. As on threads, a periodic timer re-armed by its handler counts
        from `when`, so a long gap between bars costs one round of timers, not thousands."""
        self.run()
        clock.advance_to(when)
        self.run()

    def wait_external(self, timeout_s: float) -> bool:
        """Block (real time) until a foreign thread queues a message; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._run), timeout_s)

    # -- internals ---------------------------------------------------------------------

    def _ready(self, inbox: InlineInbox) -> None:
        queue = self._later if inbox.deferred else self._run
        if threading.get_ident() == self._owner:
            queue.append(inbox)
            return
        with self._cond:
            queue.append(inbox)
            self._cond.notify_all()

    def _drain_until(self, inbox: InlineInbox, future: InlineFuture) -> None:
        """Answer an ask inline: deliver the asked actor's messages up to it, in order."""
        queue = inbox.queue
        while future._result is None:
            if not queue:
                raise Timeout(f"{inbox.actor} has nothing queued that answers this ask")
            inbox.skip += 1  # its oldest run token is spent here
            self._deliver(inbox, queue.popleft())
            self.delivered += 1

    def _deliver(self, inbox: InlineInbox, envelope: Envelope[Any]) -> None:
        """pykka's loop body for one envelope (ThreadingActor semantics)."""
        actor = inbox.actor
        assert actor is not None
        reply_to = envelope.reply_to
        inbox.busy = True
        try:
            response = actor._handle_receive(envelope.message)
            if reply_to is not None:
                reply_to.set(response)
        except Exception:
            if reply_to is not None:
                reply_to.set_exception()
            else:
                actor._handle_failure(*sys.exc_info())
                try:
                    actor.on_failure(*sys.exc_info())
                except Exception:
                    actor._handle_failure(*sys.exc_info())
        except BaseException:  # never let one unwind the scheduler
            actor._handle_failure(*sys.exc_info())
        finally:
            inbox.busy = False
        if actor.actor_stopped.is_set():
            self._finish(inbox)

    def _finish(self, inbox: InlineInbox) -> None:
        actor = inbox.actor
        assert actor is not None
        inbox.busy = True
        try:
            actor._inline_exit()
        finally:
            inbox.busy = False
        inbox.skip = 0
        # Tokens of messages the teardown handed back are stale now: drop them lazily.
        inbox.actor = None
