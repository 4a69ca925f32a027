"""The latency SLA of SPEC 5.1 and per-stage histograms (HdrHistogram, not hand-rolled)."""

from __future__ import annotations

from dataclasses import dataclass

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
    """One HdrHistogram per stage, in microseconds, 3 significant digits, up to 1 hour."""

    def __init__(self) -> None:
        self._h = {stage: HdrHistogram(1, 3_600_000_000, 3) for stage in STAGES}

    def record(self, stage: str, ms: float) -> None:
        self._h[stage].record_value(max(1, min(3_600_000_000, int(ms * 1000.0))))

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage, h in self._h.items():
            n = h.get_total_count()
            out[stage] = {
                "count": n,
                "p50_ms": h.get_value_at_percentile(50) / 1000.0 if n else 0.0,
                "p95_ms": h.get_value_at_percentile(95) / 1000.0 if n else 0.0,
                "p99_ms": h.get_value_at_percentile(99) / 1000.0 if n else 0.0,
            }
        return out
