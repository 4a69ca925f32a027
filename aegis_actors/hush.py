"""Rate-limited log lines: a condition that repeats thousands of times a second (load
shed, orders refused by the same check) is counted in full but written a few times a
window, the next line saying how many were not written."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Hush:
    burst: int = 1  # lines per key per window
    window_s: float = 60.0
    _w: dict[str, list[float]] = field(default_factory=dict)  # key -> [start, written, hushed]

    def allow(self, key: str, now: float) -> int | None:
        """None: do not write this line; else write it, and this many were hushed before."""
        w = self._w.get(key)
        if w is None or now - w[0] >= self.window_s:
            hushed = int(w[2]) if w is not None else 0
            self._w[key] = [now, 1, 0]
            return hushed
        if w[1] < self.burst:
            w[1] += 1
            return 0
        w[2] += 1
        return None
