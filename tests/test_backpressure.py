"""Overload: the gateway sheds (counted by reason) instead of the tree failing itself, and
a slow durable store is busy, not hung."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from tcp_proxy import proxied_dsn

from aegis_actors.app import Aegis
from aegis_actors.logs import flush
from aegis_actors.messages import T0, GetStatus, KvPut, MarketEvent
from aegis_actors.runtime import MARKET, STORE, WATCHDOG
from aegis_actors.store.factory import open_database
from supervisors.clock import VirtualClock


def test_a_flood_is_shed_at_the_gateway_mode_stays_normal_nothing_lost(
    live_tree: Callable[..., Aegis], aegis_env: Path
) -> None:
    """Events offered far faster than the tree finishes them (a flood, well past twice
    what it sustains): the in-flight window holds, stale ticks are shed and counted by
    reason with one warning line, no actor is restarted, the mode stays normal, and
    every event is accounted for once, each one that ran with its decision record."""
    symbols = [f"S{i:03d}" for i in range(300)]
    app = live_tree(
        feed={
            "symbols": symbols,
            "tick_interval_s": 3600.0,
            "max_inflight": 16,
            "max_wait_s": 0.02,
        },
        risk={"max_orders_per_minute": 1_000_000},
    )
    rt = app.rt
    now = rt.clock.now()
    for k, s in enumerate(symbols):  # a history, so the analyst has something to read
        for j in range(30):
            rt.cache.push_price(s, 100.0 * (1.001 if k % 2 else 0.999) ** j, now - 30 + j)
    offered = 3000
    for i in range(offered):
        t = rt.clock.now()
        rt.directory.tell(
            MARKET,
            MarketEvent(
                event_id=f"ev-flood-{i:05d}",
                symbol=symbols[i % len(symbols)],
                price=100.0,
                ts=t,
                stamps={T0: t},
            ),
        )
    m = rt.metrics

    def accounted() -> bool:
        shed = m.total("aegis_events_shed_total")
        return m.total("aegis_events_total") + shed >= offered

    wait_until(accounted, timeout=120, what="every offered event done or shed")
    status = rt.directory.ask(WATCHDOG, GetStatus(), 10.0)
    gateway = rt.directory.ask(MARKET, GetStatus(), 10.0)
    done = sum(status["outcomes"].values())
    shed = gateway["shed"]
    assert shed.get("stale", 0) > 0 and done > 0, (shed, done)
    assert done + sum(shed.values()) == offered  # each event counted once, by one path
    for reason, n in shed.items():
        assert m.value("aegis_events_shed_total", {"reason": reason}) == n
    assert status["mode"] == "normal"
    assert m.total("aegis_restarts_total") == 0 and status["hung"] == {}
    assert "timeout" not in status["outcomes"]
    assert gateway["inflight"] == 0 and gateway["waiting"] == 0
    # nothing lost: every event that ran has its decision record, every order its decision
    wait_until(
        lambda: (
            rt.directory.ask(STORE, GetStatus(), 10.0)["received"].get("DecisionRecord", 0) >= done
        ),
        what="decision records at the store",
    )
    app.stop("test over")
    db = sqlite3.connect(aegis_env / "var" / "aegis.db")
    decisions = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    orphans = db.execute(
        "SELECT COUNT(*) FROM orders WHERE intent = 'entry' AND decision_id NOT IN "
        "(SELECT decision_id FROM decisions)"
    ).fetchone()[0]
    db.close()
    assert decisions == done and orphans == 0
    flush()
    lines = [json.loads(x) for x in (aegis_env / "logs" / "aegis.jsonl").read_text().splitlines()]
    warnings = [x for x in lines if x["msg"].startswith("overload: shedding")]
    assert len(warnings) == 1  # one line a minute, however many were shed


@pytest.mark.integration
def test_a_slow_store_working_through_its_queue_is_not_restarted_as_hung(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    """PostgreSQL behind a proxy that delays every packet: the store takes real seconds
    over a backlog while heartbeats come due on the clock. It answers late but keeps
    making progress: counted as busy, never restarted, and everything is written."""
    proxy, dsn = proxied_dsn(pg_dsn)
    try:
        app = aegis_factory(
            feed={"tick_interval_s": 3600.0},
            store={"postgres_dsn": dsn, "spool_path": str(aegis_env / "var" / "spool.db")},
            watchdog={"heartbeat_every_s": 1.0, "heartbeat_timeout_s": 0.5, "heartbeat_misses": 2},
        )
        rt = app.rt
        store = rt.directory.get(STORE)
        proxy.delay_s = 0.02  # each statement now waits ~40 ms for its round trip
        n = 60
        progress = rt.progress[STORE]
        start = progress[0]
        for i in range(n):
            rt.directory.tell(STORE, KvPut(key=f"slow-{i}", value={"i": i}, ts=vclock.now()))
        for _ in range(12):  # heartbeats come due while the store is still busy
            before = progress[0]
            vclock.advance(0.5)
            # each write counts twice: received, then applied in the batch
            wait_until(lambda b=before: progress[0] > b or progress[0] - start >= 2 * n)
        proxy.delay_s = 0.0
        wait_until(lambda: rt.directory.ask(STORE, GetStatus(), 10.0)["writes"] >= n)
        assert rt.directory.get(STORE) is store  # never restarted
        status = rt.directory.ask(WATCHDOG, GetStatus(), 10.0)
        assert status["hung"] == {} and status["mode"] == "normal"
        assert rt.metrics.total("aegis_restarts_total") == 0
        busy = rt.metrics.value("aegis_heartbeat_busy_total", {"actor": STORE})
        assert busy > 0  # the store was late on the clock: the case under test happened
        db = open_database(postgres_dsn=pg_dsn)
        rows = db.select("kv")
        db.close()
        assert {r["key"] for r in rows} >= {f"slow-{i}" for i in range(n)}
    finally:
        proxy.close()
