"""The latency SLA of SPEC 5.1 and per-stage histograms (HdrHistogram, not hand-rolled)."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from aegis_actors.messages import (
    ANALYSIS,
    CONTEXT,
    DECISION,
    DONE,
    ORDER_ACCEPTED,
    T0,
    VERIFICATION,
)
from aegis_actors.watchdog.anomaly import ZScore


@dataclass(frozen=True)
class Sla:
    target_ms: float
    warning_ms: float
    critical_ms: float

    def grade(self, ms: float) -> str:
        if ms >= self.critical_ms:
            return "critical"
        if ms >= self.warning_ms:
            return "warning"
        return "ok"


HIGHEST_US = 3_600_000_000  # an hour, in microseconds

# stage -> (from stamp, to stamp, SLA)
STAGES: dict[str, tuple[str, str, Sla]] = {
    "detect_to_analysis": (T0, CONTEXT, Sla(50, 100, 200)),
    "analysis": (CONTEXT, ANALYSIS, Sla(2000, 3000, 5000)),
    "verification": (CONTEXT, VERIFICATION, Sla(1500, 2500, 4000)),
    "order": (DECISION, ORDER_ACCEPTED, Sla(500, 1000, 2000)),
    "cycle": (T0, DONE, Sla(4000, 6000, 10000)),
}


def stage_latencies(stamps: dict[str, float]) -> dict[str, float]:
    """Milliseconds per stage, for the stages whose two stamps are both present."""
    out = {}
    for stage, (a, b, _sla) in STAGES.items():
        if a in stamps and b in stamps:
            out[stage] = max(0.0, (stamps[b] - stamps[a]) * 1000.0)
    return out


class StageHistograms:
    """One HdrHistogram per stage, in microseconds, 3 significant digits, up to 1 hour.

    Percentiles are read in one pass over a histogram's buckets (not one pass each), and
    only for a stage that recorded something since the last read: `status` is asked
    often (admin snapshot, dashboard) and a pass over 23,552 buckets is milliseconds.
    """

    def __init__(self) -> None:
        self._h = {stage: HdrHistogram(1, HIGHEST_US, 3) for stage in STAGES}
        for h in self._h.values():
            # Counted in a list: an item add costs a third of one into the ctypes array,
            # and HdrHistogram reads either alike (`counts[index]`, percentiles, totals).
            # Only its encoder keeps the array: these histograms are never encoded.
            h.counts = [0] * h.counts_len
        self._read: dict[str, dict[str, float]] = {stage: _empty() for stage in STAGES}
        # a stage is read again when its count moved since (not a set kept per value)
        self._read_at: dict[str, int] = {stage: 0 for stage in STAGES}
        h = next(iter(self._h.values()))  # every stage's histogram has the same layout
        self._mask = h.sub_bucket_mask
        self._unit = h.unit_magnitude
        self._half_mag = h.sub_bucket_half_count_magnitude
        self._half = h.sub_bucket_half_count
        self._shift = h.unit_magnitude + h.sub_bucket_half_count_magnitude + 1

    def record(self, stage: str, ms: float) -> None:
        """`HdrHistogram.record_value` with its index arithmetic inlined (a third of its
        cost; the watchdog records every stage of every event); test_watchdog checks it
        counts exactly as record_value does."""
        v = int(ms * 1000.0)
        v = 1 if v < 1 else (HIGHEST_US if v > HIGHEST_US else v)
        h = self._h[stage]
        bucket = (v | self._mask).bit_length() - self._shift
        h.counts[((bucket + 1) << self._half_mag) + (v >> (bucket + self._unit)) - self._half] += 1
        h.total_count += 1
        if v < h.min_value:
            h.min_value = v
        if v > h.max_value:
            h.max_value = v

    def summary(self) -> dict[str, dict[str, float]]:
        read_at = self._read_at
        for stage, h in self._h.items():
            n = h.get_total_count()
            if n == read_at[stage]:
                continue  # nothing recorded since the last read: the same figures
            read_at[stage] = n
            at = h.get_percentile_to_value_dict([50.0, 95.0, 99.0]) if n else {}
            self._read[stage] = {
                "count": n,
                "p50_ms": at.get(50.0, 0) / 1000.0,
                "p95_ms": at.get(95.0, 0) / 1000.0,
                "p99_ms": at.get(99.0, 0) / 1000.0,
            }
        return {stage: dict(v) for stage, v in self._read.items()}


def _empty() -> dict[str, float]:
    return {"count": 0, "p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}


class TurnObserver:
    """One stage's prometheus histogram child, observed in bulk: a value is counted here
    (a bisect on the bounds) and the child's buckets and sum grow once per bucket at the
    end of the watchdog's mailbox turn (`flush`), instead of a locked increment and a
    walk over the bounds per value. A scrape sees values at most one turn late."""

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds: list[float] = list(child._upper_bounds)  # ascending, +Inf last
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.n = 0

    def observe(self, ms: float) -> None:
        # the first bound >= ms: the bucket prometheus's own observe() would pick
        self.counts[bisect_left(self.bounds, ms)] += 1
        self.total += ms
        self.n += 1

    def flush(self) -> None:
        if not self.n:
            return
        buckets = self.child._buckets
        for i, c in enumerate(self.counts):
            if c:
                buckets[i].inc(c)
                self.counts[i] = 0
        self.child._sum.inc(self.total)
        self.total = 0.0
        self.n = 0


class StageWatch:
    """What one stage's latency feeds, per event: its HdrHistogram (`StageHistograms.record`),
    its prometheus buckets of the turn (`TurnObserver.observe`) and its z-score history
    (`ZScore.add`, scored first when the value is at or past the stage's target), in one
    call with the first two inlined: the watchdog takes four or five stages of every event.
    Each part counts exactly as its own method does (test_watchdog checks it)."""

    __slots__ = (
        "_half",
        "_half_mag",
        "_mask",
        "_shift",
        "_unit",
        "bounds",
        "counts",
        "h",
        "obs",
        "obs_counts",
        "sla",
        "stage",
        "target_ms",
        "z",
    )

    def __init__(
        self, stage: str, sla: Sla, hist: StageHistograms, obs: TurnObserver, z: ZScore
    ) -> None:
        self.stage = stage
        self.sla = sla
        self.target_ms = sla.target_ms
        h = self.h = hist._h[stage]
        self.counts = h.counts
        self._mask = hist._mask
        self._unit = hist._unit
        self._half_mag = hist._half_mag
        self._half = hist._half
        self._shift = hist._shift
        self.obs = obs
        self.obs_counts = obs.counts
        self.bounds = obs.bounds
        self.z = z

    def take(self, ms: float) -> float | None:
        """Count `ms` (>= 0) everywhere; its z-score against the history before it when
        it is at or past the target (None otherwise, or while the history is short)."""
        # StageHistograms.record
        v = int(ms * 1000.0)
        v = 1 if v < 1 else (HIGHEST_US if v > HIGHEST_US else v)
        h = self.h
        bucket = (v | self._mask).bit_length() - self._shift
        self.counts[
            ((bucket + 1) << self._half_mag) + (v >> (bucket + self._unit)) - self._half
        ] += 1
        h.total_count += 1
        if v < h.min_value:
            h.min_value = v
        if v > h.max_value:
            h.max_value = v
        # TurnObserver.observe
        obs = self.obs
        self.obs_counts[bisect_left(self.bounds, ms)] += 1
        obs.total += ms
        obs.n += 1
        # ZScore.score (only when slow: fast outliers are no news), then ZScore.add
        z = self.z
        score = z.score(ms) if ms >= self.target_ms else None
        z.add(ms)
        return score
