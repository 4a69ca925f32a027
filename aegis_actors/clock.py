"""The one source of time for AEGIS.

Live runs read the wall clock; backtests and tests install a `VirtualClock` and move it
on by hand, so every timed rule (stage timeouts, tiers, saves, sessions, evaluations)
is tested in milliseconds. Actors get the clock from their `ChildContext`; code outside
the tree reads `get_clock()`.
"""

from __future__ import annotations

from supervisors.clock import Clock, Timer, VirtualClock, WallClock

__all__ = ["Clock", "Timer", "VirtualClock", "WallClock", "get_clock", "set_clock"]

_clock: Clock = WallClock()


def get_clock() -> Clock:
    return _clock


def set_clock(clock: Clock) -> Clock:
    """Install `clock` process-wide; returns the previous one."""
    global _clock
    previous, _clock = _clock, clock
    return previous
