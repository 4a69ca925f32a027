"""Execution quality for status: success rate (SPEC 5.3) and order -> accepted latency
held against the SLA (SPEC 5.1: 500 ms target, 1 s warning, 2 s critical)."""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

from aegis_actors.watchdog.sla import STAGES

SUCCESS_TARGET = 99.5  # percent of orders sent that the broker accepted (SPEC 5.3)


class ExecutionQuality:
    def __init__(self) -> None:
        self.sla = STAGES["order"][2]
        self.sent = 0
        self.accepted = 0
        self.rejected = 0
        self.errors = 0
        self.grades = {"ok": 0, "warning": 0, "critical": 0}
        self._hist = HdrHistogram(1, 3_600_000_000, 3)  # microseconds
        # Latencies not yet in the histogram, value -> count: recording one costs more than
        # the rest of an order's bookkeeping, and only `summary` reads it.
        self._pending: dict[int, int] = {}

    @property
    def hist(self) -> HdrHistogram:
        """Every latency accepted so far."""
        self._fold()
        return self._hist

    def _fold(self) -> None:
        for value, count in self._pending.items():
            self._hist.record_value(value, count)
        self._pending.clear()

    def accept(self, latency_ms: float) -> None:
        self.sent += 1
        self.accepted += 1
        self.grades[self.sla.grade(latency_ms)] += 1
        us = max(1, min(3_600_000_000, int(latency_ms * 1000.0)))
        pending = self._pending
        pending[us] = pending.get(us, 0) + 1
        if len(pending) > 4096:  # bounded: a live run's latencies are all different
            self._fold()

    def reject(self) -> None:
        self.sent += 1
        self.rejected += 1

    def error(self) -> None:
        self.sent += 1
        self.errors += 1

    def success_rate(self) -> float | None:
        return None if self.sent == 0 else self.accepted / self.sent * 100.0

    def summary(self) -> dict[str, Any]:
        rate = self.success_rate()
        n = self.hist.get_total_count()
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "errors": self.errors,
            "success_rate_pct": None if rate is None else round(rate, 3),
            "success_target_pct": SUCCESS_TARGET,
            "success_ok": rate is None or rate >= SUCCESS_TARGET,
            "order_to_accepted_ms": {
                "count": n,
                "p50": self.hist.get_value_at_percentile(50) / 1000.0 if n else 0.0,
                "p99": self.hist.get_value_at_percentile(99) / 1000.0 if n else 0.0,
                "sla_ms": {
                    "target": self.sla.target_ms,
                    "warning": self.sla.warning_ms,
                    "critical": self.sla.critical_ms,
                },
                "graded": dict(self.grades),
            },
        }
