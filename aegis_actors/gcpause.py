"""No long garbage-collection pauses in a running tree.

A full (generation 2) collection walks every tracked object and holds the GIL meanwhile:
with the code, pydantic schemas, settings and the tree itself (~80,000 objects) that was
25-110 ms on this machine, every few seconds under load. Every actor stops for that
long, so ticks sat in the gateway's mailbox past `feed.max_wait_s` and were shed as
stale at a rate the CPU could carry. What exists once the tree has started lives as long
as the run: it is collected once and frozen (`gc.freeze`), so later collections walk
only what the run created since. Unfrozen when the last running tree stops, so a
process that starts many trees (tests, a backtest sweep) frees each one's garbage. The
price: a frozen object that later becomes cyclic garbage (an actor instance replaced by a
restart) stays in memory until then; restarts are rare, counted and bounded by the
supervisors' intensity limits.

The youngest generation is collected every `YOUNG_THRESHOLD` allocations instead of 700:
at 700 each collection found the few events in flight still alive and pushed them on to
the older generations, which were then walked again and again (~1,400 young, 126 middle
and 9 full collections in 8 s at 4,000 events/s: ~9 us of CPU per event). At 10,000
they are mostly gone by then (~55, 4 and none: ~3 us per event).
"""

from __future__ import annotations

import gc
import threading

__all__ = ["release", "settle"]

YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation

_lock = threading.Lock()
_running = 0  # trees started in this process and not yet stopped
_saved: tuple[int, int, int] | None = None  # the thresholds before the first tree


def settle() -> None:
    """The tree has started: collect once, then freeze what survives."""
    global _running, _saved
    with _lock:
        _running += 1
        gc.collect()
        gc.freeze()
        if _saved is None:
            _saved = gc.get_threshold()
            gc.set_threshold(max(YOUNG_THRESHOLD, _saved[0]), _saved[1], _saved[2])


def release() -> None:
    """A tree stopped: when none is left, its objects are collectable again."""
    global _running, _saved
    with _lock:
        _running = max(0, _running - 1)
        if not _running:
            gc.unfreeze()
            if _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
