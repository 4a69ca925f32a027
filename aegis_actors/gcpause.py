"""No long garbage-collection pauses in a running tree.

A full (generation 2) collection walks every tracked object and holds the GIL meanwhile:
with the code, pydantic schemas, settings and the tree itself (~80,000 objects) that was
25-110 ms on this machine, every few seconds under load. Every actor stops for that
long, so ticks sat in the gateway's mailbox past `feed.max_wait_s` and were shed as
stale at a rate the CPU could carry. What exists once the tree has started lives as long
as the run: it is collected once and frozen (`gc.freeze`), so later collections walk
only what the run created since. Unfrozen when the last running tree stops, so a
process that starts many trees (tests, a backtest sweep) frees each one's garbage.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["release", "settle"]

_lock = threading.Lock()
_running = 0  # trees started in this process and not yet stopped


def settle() -> None:
    """The tree has started: collect once, then freeze what survives."""
    global _running
    with _lock:
        _running += 1
        gc.collect()
        gc.freeze()


def release() -> None:
    """A tree stopped: when none is left, its objects are collectable again."""
    global _running
    with _lock:
        _running = max(0, _running - 1)
        if not _running:
            gc.unfreeze()
