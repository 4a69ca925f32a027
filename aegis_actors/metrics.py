"""Prometheus metrics, one registry per running tree (tests run several trees)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.events = Counter(
            "aegis_events_total", "Events finished, by outcome", ["outcome"], registry=r
        )
        self.stage_ms = Histogram(
            "aegis_stage_latency_ms", "Stage latency", ["stage"], buckets=_MS_BUCKETS, registry=r
        )
        self.orders = Counter("aegis_orders_total", "Orders by status", ["status"], registry=r)
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
