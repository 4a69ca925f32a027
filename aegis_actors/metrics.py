"""Prometheus metrics, one registry per running tree (tests run several trees)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

POSTURE_RANK = {"offensive": 0, "guerrilla": 1, "defensive": 2}
# Order outcomes counted as failures: the broker refused it, its answer was lost, or it
# was never written ahead (so never sent). Statuses are OrderStatus values.
FAILED_ORDER_STATUSES = frozenset({"rejected", "unknown", "not_written"})
_MS_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 200, 500, 1000, 1500, 2000, 3000, 4000, 5000, 10000)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.ticks = Counter("aegis_ticks_total", "Ticks accepted from the feed", registry=r)
        self.bad_ticks = Counter(
            "aegis_bad_ticks_total", "Ticks dropped, by reason", ["reason"], registry=r
        )
        self.coalesced = Counter(
            "aegis_events_coalesced_total",
            "Events replaced by a newer one for a busy symbol (latest wins)",
            registry=r,
        )
        self.shed = Counter(
            "aegis_events_shed_total",
            "Events the gateway did not admit under overload (backpressure), by reason",
            ["reason"],
            registry=r,
        )
        self.events = Counter(
            "aegis_events_total", "Events finished, by outcome", ["outcome"], registry=r
        )
        self.stage_ms = Histogram(
            "aegis_stage_latency_ms", "Stage latency", ["stage"], buckets=_MS_BUCKETS, registry=r
        )
        self.orders = Counter("aegis_orders_total", "Orders by status", ["status"], registry=r)
        # Plain tallies beside `orders` (kept by `order()`): the watchdog reads the success
        # rate on every account check, and a registry collect per read was ~2% of a replay.
        self._orders_ok = 0.0
        self._orders_bad = 0.0
        self.refused = Counter(
            "aegis_orders_refused_total",
            "Orders refused by a pre-trade check",
            ["check"],
            registry=r,
        )
        self.fills = Counter("aegis_fills_total", "Fills recorded", registry=r)
        self.errors = Counter("aegis_errors_total", "Handled errors, by kind", ["kind"], registry=r)
        self.dead_letters = Counter(
            "aegis_dead_letters_total",
            "Messages that reached no live actor",
            ["actor"],
            registry=r,
        )
        self.restarts = Counter(
            "aegis_restarts_total", "Supervisor restarts, by child", ["child"], registry=r
        )
        self.alerts = Counter("aegis_alerts_total", "Alerts raised", ["level"], registry=r)
        self.mode = Gauge(
            "aegis_trading_mode", "Trading mode rank (0 normal..4 shutdown)", registry=r
        )
        self.equity = Gauge("aegis_equity", "Account equity", registry=r)
        self.open_positions = Gauge("aegis_open_positions", "Open positions", registry=r)
        # -- monitoring (watchdog, alerts, dashboard) ---------------------------------
        self.posture = Gauge(
            "aegis_posture", "Posture rank (0 offensive, 1 guerrilla, 2 defensive)", registry=r
        )
        self.alerts_suppressed = Counter(
            "aegis_alerts_suppressed_total",
            "Alerts not sent again: a repeat within the de-duplication window",
            ["level"],
            registry=r,
        )
        self.alert_deliveries = Counter(
            "aegis_alert_deliveries_total",
            "Alert deliveries by channel and result (sent | failed | dropped)",
            ["channel", "result"],
            registry=r,
        )
        self.accuracy = Gauge(
            "aegis_accuracy_ratio",
            "SPEC 5.3 rates: analysis (7-day), veto hit rate, execution success",
            ["kind"],
            registry=r,
        )
        self.accuracy_target = Gauge(
            "aegis_accuracy_target_ratio", "SPEC 5.3 target of each rate", ["kind"], registry=r
        )
        self.accuracy_below = Gauge(
            "aegis_accuracy_below_target",
            "1 while a SPEC 5.3 rate (with enough samples) is under its target",
            ["kind"],
            registry=r,
        )
        self.heartbeat_misses = Counter(
            "aegis_heartbeat_misses_total", "Heartbeats not answered in time", ["actor"], registry=r
        )
        self.heartbeat_busy = Counter(
            "aegis_heartbeat_busy_total",
            "Heartbeats answered late by an actor that kept making progress (busy, not hung)",
            ["actor"],
            registry=r,
        )
        self.anomalies = Counter(
            "aegis_anomalies_total", "Z-score anomalies, by series", ["series"], registry=r
        )
        r.register(_Drops(self))
        if PROCESS_COLLECTOR is not None:
            ProcessCollector(registry=r)  # CPU, memory, open files of this process

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 when absent), through the registry's public API."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def total(self, name: str) -> float:
        """The sum of a labelled counter over every label (0 when absent)."""
        base = name.removesuffix("_total")
        out = 0.0
        for metric in self.registry.collect():
            if metric.name == base:
                out += sum(s.value for s in metric.samples if s.name == name)
        return out

    def order(self, status: str, n: float = 1.0) -> None:
        """Count `n` orders with this outcome (an OrderStatus value or "not_written")."""
        self.orders.labels(status).inc(n)
        if status in FAILED_ORDER_STATUSES:
            self._orders_bad += n
        else:
            self._orders_ok += n

    def order_success(self) -> tuple[float | None, int]:
        """Share of orders sent that the broker did not refuse or fail (SPEC 5.3)."""
        n = int(self._orders_ok + self._orders_bad)
        return (self._orders_ok / n if n else None), n


class _Drops(Collector):
    """`aegis_drops_total{reason}`: every way an input is dropped, in one family."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily(
            "aegis_drops",
            "Inputs dropped, by reason (bad ticks, coalesced, dead letters)",
            labels=["reason"],
        )
        for metric in self.m.bad_ticks.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    fam.add_metric([f"bad_tick:{s.labels.get('reason', '?')}"], s.value)
        fam.add_metric(["coalesced"], self.m.value("aegis_events_coalesced_total"))
        for metric in self.m.shed.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    fam.add_metric([f"shed:{s.labels.get('reason', '?')}"], s.value)
        dead = 0.0
        for metric in self.m.dead_letters.collect():
            dead += sum(s.value for s in metric.samples if s.name.endswith("_total"))
        fam.add_metric(["dead_letter"], dead)
        dropped = 0.0
        for metric in self.m.alert_deliveries.collect():
            dropped += sum(
                s.value
                for s in metric.samples
                if s.name.endswith("_total") and s.labels.get("result") == "dropped"
            )
        fam.add_metric(["alert_delivery"], dropped)
        yield fam
