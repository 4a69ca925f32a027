"""Store outages during a whole run on the virtual clock, through proxies we can cut:
PostgreSQL down -> `limited`, no order out, every decision kept and written in order;
Redis down -> context from the durable store, then the cache is used again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from conftest import drive, settle, wait_until
from money_kit import pg_store
from tcp_proxy import TcpProxy, proxied_dsn

from aegis_actors.messages import GetStatus
from aegis_actors.runtime import CONTEXT, STORE
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock

FAST = {
    "feed": {"symbols": ["AAPL", "MSFT", "NVDA"], "volatility": 0.01, "tick_interval_s": 0.25},
}


def status(app: Any, name: str) -> dict[str, Any]:
    return app.rt.directory.ask(name, GetStatus(), 5.0)


@pytest.mark.integration
def test_postgres_outage_mid_run(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    proxy, dsn = proxied_dsn(pg_dsn)
    try:
        app = aegis_factory(
            store=pg_store(aegis_env, dsn, retry_initial_s=1.0, retry_max_s=2.0),
            broker={"paper_state_path": str(aegis_env / "var" / "paper.json")},
            **FAST,
        )
        drive(vclock, 20.0)
        sent_before = dict(app.broker.sent)
        assert sent_before, "the run placed no order before the outage"
        proxy.cut()
        drive(vclock, 20.0)
        assert app.rt.cache.get_json("mode") == "limited"
        # No entry went out while the store was down (exits may: their write-ahead spools).
        during = set(app.broker.sent) - set(sent_before)
        down = status(app, STORE)
        assert down["up"] is False and down["spooled_kinds"].get("DecisionRecord", 0) > 0
        proxy.restore()
        drive(vclock, 3.0)
        up = wait_until(lambda: (s := status(app, STORE))["up"] and s["spool"] == 0 and s)
        settle()
        up = status(app, STORE)
        db = open_database(postgres_dsn=pg_dsn)
        rows = db.select("decisions", order_by="id")
        orders = {r["client_order_id"] for r in db.select("orders")}
        mode_changes = [r["new"] for r in db.select("mode_changes", order_by="id")]
        db.close()
        # Every decision the store was given is there, spooled ones included, in order.
        assert len(rows) == up["received"]["DecisionRecord"]
        created = [r["created_at"] for r in rows]
        assert created == sorted(created)
        assert "limited" in mode_changes
        assert set(app.broker.sent) <= orders  # nothing was ever sent that was not written
        db = open_database(postgres_dsn=pg_dsn)
        intents = {r["client_order_id"]: r["intent"] for r in db.select("orders")}
        db.close()
        assert all(intents[c] == "exit" for c in during), during
    finally:
        proxy.close()


@pytest.mark.integration
def test_redis_outage_mid_run(
    aegis_factory: Callable[..., Any], redis_prefix: tuple[str, str], vclock: VirtualClock
) -> None:
    url, prefix = redis_prefix
    u = urlparse(url)
    proxy = TcpProxy(u.hostname or "127.0.0.1", u.port or 6379)
    try:
        app = aegis_factory(
            store={
                "redis_url": f"redis://127.0.0.1:{proxy.port}{u.path}",
                "redis_prefix": prefix,
                "redis_backoff_initial_s": 1.0,
                "redis_backoff_max_s": 2.0,
            },
            **FAST,
        )
        assert app.rt.cache.kind == "redis"
        drive(vclock, 5.0)
        warm = status(app, CONTEXT)
        drive(vclock, 5.0)
        hits = status(app, CONTEXT)
        assert hits["loaded"] > warm["loaded"]
        assert hits["durable_reads"] == warm["durable_reads"]  # warm cache: no durable reads
        proxy.cut()
        drive(vclock, 5.0)
        down = status(app, CONTEXT)
        # Decisions keep coming, their state from the durable store.
        assert down["loaded"] > hits["loaded"]
        assert down["durable_reads"] - hits["durable_reads"] >= down["loaded"] - hits["loaded"]
        assert app.rt.cache.up is False
        proxy.restore()
        drive(vclock, 3.0)
        assert app.rt.cache.up is True and app.rt.cache.reconnects == 1
        back = status(app, CONTEXT)
        drive(vclock, 5.0)
        later = status(app, CONTEXT)
        assert later["loaded"] > back["loaded"]
        assert later["durable_reads"] == back["durable_reads"]  # the cache serves again
    finally:
        proxy.close()
