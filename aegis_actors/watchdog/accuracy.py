"""Accuracy tracking (SPEC 5.3): was the analyst right, did the veto avoid a loss?

A call is judged once its horizon has passed, on the realised move from the price at the
call to the price then. Results are kept per day, so the rate is a moving average over
the last `days` days.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

DAY_S = 86_400.0


class Call(NamedTuple):
    """One call waiting for its horizon. Kept as a plain tuple of plain values, which the
    garbage collector stops tracking (only exact tuples): a run keeps every decision of
    the last horizon (300 s, a million at 5,000 events/s) and a full collection must not
    walk them (gcpause.py)."""

    decision_id: str
    symbol: str
    direction: str  # up | down | flat
    vetoed: bool
    price: float
    ts: float


class DailyRate:
    """Hits over judged calls, bucketed by day, over a moving window of days."""

    def __init__(self, days: int) -> None:
        self.days = days
        self.buckets: dict[int, list[int]] = {}
        self.added = 0  # results added so far: unchanged, so is every rate of a day

    def add(self, ts: float, hit: bool) -> None:
        self.add_many(ts, int(hit), 1)

    def add_many(self, ts: float, hits: int, n: int) -> None:
        b = self.buckets.setdefault(int(ts // DAY_S), [0, 0])
        b[0] += hits
        b[1] += n
        self.added += n

    def rate(self, now: float) -> tuple[float | None, int]:
        today = int(now // DAY_S)
        for day in [d for d in self.buckets if d <= today - self.days]:
            del self.buckets[day]
        hits = sum(b[0] for b in self.buckets.values())
        n = sum(b[1] for b in self.buckets.values())
        return (hits / n if n else None), n


class AccuracyBook:
    def __init__(self, days: int = 7, flat_band_pct: float = 0.05) -> None:
        self.flat_band_pct = flat_band_pct
        self.pending: dict[str, tuple[Any, ...]] = {}  # decision_id -> tuple(Call)
        self.analysis = DailyRate(days)
        self.veto = DailyRate(days)

    def call(self, c: Call) -> None:
        self.pending[c.decision_id] = tuple(c)

    def call_of(
        self, decision_id: str, symbol: str, direction: str, vetoed: bool, price: float, ts: float
    ) -> None:
        """`call(Call(...))` without the named tuple built (once per decision)."""
        self.pending[decision_id] = (decision_id, symbol, direction, vetoed, price, ts)

    def judge(self, decision_id: str, price: float, now: float) -> dict[str, Any] | None:
        """Judge one call on `price`; returns what was scored (None if unknown or unpriced)."""
        raw = self.pending.pop(decision_id, None)
        if raw is None:
            return None
        c = Call(*raw)
        if c.price <= 0 or price <= 0:
            return None
        move = (price / c.price - 1.0) * 100.0
        realised = "flat" if abs(move) < self.flat_band_pct else ("up" if move > 0 else "down")
        out: dict[str, Any] = {"symbol": c.symbol, "move_pct": move, "realised": realised}
        out["analysis_hit"] = realised == c.direction
        self.analysis.add(now, out["analysis_hit"])
        if c.vetoed and c.direction in ("up", "down"):
            # the vetoed trade followed the analyst; it would have lost if the move went against
            lost = (move < 0) if c.direction == "up" else (move > 0)
            out["veto_hit"] = lost
            self.veto.add(now, lost)
        return out

    def moved(self) -> tuple[int, int]:
        """What the two rates depend on besides the day: the same, and so are they."""
        return self.analysis.added, self.veto.added

    def summary(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        a, an = self.analysis.rate(now)
        v, vn = self.veto.rate(now)
        return {
            "analysis_accuracy": a,
            "analysis_judged": an,
            "veto_hit_rate": v,
            "vetoes_judged": vn,
            "pending": len(self.pending),
        }


# -- the SPEC 5.3 targets ---------------------------------------------------------------


@dataclass(frozen=True)
class TargetResult:
    """One rate against its target; `status` is met | below | too_few (under min samples)."""

    kind: str  # analysis | veto | execution
    label: str
    value: float | None
    target: float
    samples: int
    min_samples: int
    status: str

    def line(self) -> str:
        shown = "-" if self.value is None else f"{self.value * 100:.1f}%"
        return (
            f"{self.label} {shown} (target {self.target * 100:g}%, "
            f"{self.samples} samples): {self.status.replace('_', ' ')}"
        )


LABELS = {
    "analysis": "prediction accuracy",
    "veto": "veto hit rate",
    "execution": "execution success",
}


def judge_targets(
    rates: dict[str, tuple[float | None, int]],
    targets: dict[str, float],
    min_samples: int,
) -> list[TargetResult]:
    """Each rate (value, samples) against its target; too few samples judge nothing."""
    out = []
    for kind, target in targets.items():
        value, n = rates.get(kind, (None, 0))
        if value is None or n < min_samples:
            status = "too_few"
        else:
            status = "met" if value >= target else "below"
        out.append(TargetResult(kind, LABELS[kind], value, target, n, min_samples, status))
    return out


def targets_of(w: Any) -> dict[str, float]:
    """The targets from `[watchdog]` settings."""
    return {
        "analysis": w.target_analysis,
        "veto": w.target_veto,
        "execution": w.target_execution,
    }
