"""Clocks: the one interface every timed thing reads.

`WallClock` runs timers on one scheduler thread; `VirtualClock` only moves when
told to (`advance`), so a five-minute tier is tested in milliseconds and timed
logic never depends on how fast the machine is.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "Timer", "VirtualClock", "WallClock"]

log = logging.getLogger(__name__)


class Timer:
    """A scheduled callback; `cancel()` before it fires and it never runs."""

    __slots__ = ("cancelled", "fn", "heap", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False
        self.heap: _Heap | None = None  # the heap holding it, told of a cancel

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.heap is not None:
                self.heap.cancelled += 1


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (virtual or real)."""
        ...

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Timer:
        """Run `fn` (on a clock thread, keep it short: tell an actor) after `delay_s`."""
        ...

    def call_at(self, when: float, fn: Callable[[], None]) -> Timer: ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread until the clock has moved `seconds` on."""
        ...


def _run(timer: Timer) -> None:
    if timer.cancelled:
        return
    try:
        timer.fn()
    except Exception:  # a timer callback must never kill the clock thread
        log.exception("timer callback failed")


class _Heap:
    """Timers by due time. Cancelled ones are dropped when they reach the top, and the
    heap is rebuilt once they are more than half of it, so cancelled timers never pile up."""

    COMPACT_MIN = 256

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.cancelled = 0  # approximate (timers are cancelled from any thread)

    def push(self, timer: Timer) -> bool:
        """Add a timer; True when it is now the earliest (a waiting loop must wake)."""
        timer.heap = self
        if self.cancelled > self.COMPACT_MIN and self.cancelled * 2 > len(self._heap):
            self._heap = [e for e in self._heap if not e[2].cancelled]
            heapq.heapify(self._heap)
            self.cancelled = 0
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return self._heap[0][2] is timer

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
            self.cancelled = max(0, self.cancelled - 1)

    def pop_due(self, now: float) -> Timer | None:
        self._drop_cancelled()
        if self._heap and self._heap[0][0] <= now:
            timer = heapq.heappop(self._heap)[2]
            timer.heap = None
            return timer
        return None

    def next_when(self) -> float | None:
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


class WallClock:
    """Real time; timers fire on one daemon scheduler thread."""

    def __init__(self) -> None:
        self._heap = _Heap()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(when, fn)
        with self._cond:
            earliest = self._heap.push(timer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="aegis-clock", daemon=True)
                self._thread.start()
            if earliest:  # a later timer does not need the loop awake: it waits long enough
                self._cond.notify()
        return timer

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Timer:
        return self.call_at(time.time() + max(0.0, delay_s), fn)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def _loop(self) -> None:
        while True:
            with self._cond:
                due = self._heap.pop_due(time.time())
                if due is None:
                    nxt = self._heap.next_when()
                    self._cond.wait(None if nxt is None else max(0.0, nxt - time.time()))
                    continue
            _run(due)


class VirtualClock:
    """Time that moves only by `advance`; timers fire in order on the advancing thread."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00Z
        self._now = start
        self._heap = _Heap()
        self._cond = threading.Condition()
        self._advancing = threading.Lock()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(when, fn)
        with self._cond:
            self._heap.push(timer)
        return timer

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> Timer:
        return self.call_at(self._now + max(0.0, delay_s), fn)

    def pending(self) -> int:
        """Timers not yet fired (cancelled ones may still be counted)."""
        with self._cond:
            return len(self._heap)

    def next_timer(self) -> float | None:
        with self._cond:
            return self._heap.next_when()

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, firing every timer that falls due, in order."""
        self.advance_to(self._now + seconds)

    def advance_to(self, target: float) -> None:
        with self._advancing:
            while True:
                with self._cond:
                    due = self._heap.pop_due(target)
                    if due is None:
                        self._now = max(self._now, target)
                        self._cond.notify_all()
                        return
                    self._now = max(self._now, due.when)
                    self._cond.notify_all()
                _run(due)

    def sleep(self, seconds: float) -> None:
        self.sleep_until(self._now + seconds)

    def sleep_until(self, when: float, real_timeout_s: float | None = None) -> bool:
        """Block until virtual time reaches `when`; False if the real timeout ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: self._now >= when, real_timeout_s)
