"""Durable-state figures beside the raw driver doing the same operation, same run:

    python scripts/bench_store.py [--n 500] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
                                  [--redis redis://127.0.0.1:6379/15]

- order write-ahead latency (the execution's ask to the store actor, PostgreSQL) vs a raw
  psycopg2 autocommitted INSERT of the same row;
- context-load latency, warm Redis and on a miss (durable read through the store actor),
  from telling the context loader an event to the commander holding its Context, vs the
  raw redis-py reads / psycopg2 SELECTs the loader needs;
- decision writes per second through the store actor vs raw psycopg2 INSERTs.
Uses its own database (created, dropped) and Redis key prefix (deleted).
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aegis_actors.base import AegisActor  # noqa: E402
from aegis_actors.cache_redis import RedisCache  # noqa: E402
from aegis_actors.clock import WallClock  # noqa: E402
from aegis_actors.context import K_MODE, K_POSITIONS, K_POSTURE, ContextLoader  # noqa: E402
from aegis_actors.messages import (  # noqa: E402
    Context,
    DecisionRecord,
    GetStatus,
    MarketEvent,
    Order,
    OrderType,
    PositionUpdate,
    Side,
    Verdict,
    WriteOrder,
)
from aegis_actors.runtime import ANALYST, COMMANDER, CONTEXT, STORE, VERIFIER, Runtime  # noqa: E402
from aegis_actors.settings import load_settings  # noqa: E402
from aegis_actors.store import open_database  # noqa: E402
from aegis_actors.store.actor import Store  # noqa: E402
from aegis_actors.tree import actor  # noqa: E402
from supervisors import Directory, Policy, start_tree  # noqa: E402

ARRIVED: queue.Queue[float] = queue.Queue()


class Sink(AegisActor):
    def on_Context(self, _ctx: Context) -> None:
        if self.name == COMMANDER:
            ARRIVED.put(time.perf_counter())


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def line(name: str, xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return (
        f"{name:<44} n={len(ms):<5} p50 {pct(ms, 50):7.3f} ms   p99 {pct(ms, 99):7.3f} ms   "
        f"mean {statistics.fmean(ms):7.3f} ms"
    )


def order(i: int, tag: str) -> Order:
    return Order(
        client_order_id=f"{tag}-{i}",
        decision_id=f"d-{tag}-{i}",
        event_id=f"e-{i}",
        symbol="AAPL",
        side=Side.BUY,
        qty=10.0,
        order_type=OrderType.LIMIT,
        limit_price=100.0,
        created_at=time.time(),
    )


def decision(i: int, tag: str) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"{tag}-{i}",
        event_id=f"e-{i}",
        symbol="AAPL",
        analysis=None,
        verdict=Verdict(event_id=f"e-{i}", symbol="AAPL", approve=True, confidence=0.3),
        decision=None,
        vetoed=False,
        confidence=0.7,
        outcome="hold",
        latency_ms={"whole_cycle": 3.2},
        created_at=time.time(),
    )


def raw_order_insert(conn: Any, n: int) -> list[float]:
    out = []
    with conn.cursor() as cur:
        for i in range(n):
            row = order(i, "raw").model_dump(mode="json")
            row["updated_at"] = row["created_at"]
            cols = list(row)
            sql = (
                f"INSERT INTO orders ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                "ON CONFLICT DO NOTHING"
            )
            t0 = time.perf_counter()
            cur.execute(sql, [row[c] for c in cols])
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = ap.parse_args()
    n = args.n

    admin = psycopg2.connect(args.pg)
    admin.autocommit = True
    dbname = f"aegis_bench_{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f"CREATE DATABASE {dbname}")
    dsn = psycopg2.extensions.make_dsn(args.pg, dbname=dbname)
    prefix = f"aegis-bench-{uuid.uuid4().hex[:8]}:"
    tmp = Path(tempfile.mkdtemp(prefix="aegis-bench-"))
    root = None
    try:
        open_database(postgres_dsn=dsn).close()  # migrate
        raw_pg = psycopg2.connect(dsn)
        raw_pg.autocommit = True
        raw_redis = redis.Redis.from_url(args.redis)

        settings = load_settings(
            None,
            store={"postgres_dsn": dsn, "spool_path": str(tmp / "spool.db")},
            run={"log_dir": str(tmp / "logs")},
        )
        clock = WallClock()
        rt = Runtime(settings=settings, clock=clock, directory=Directory())
        rt.cache = RedisCache(args.redis, prefix=prefix, now=clock.now)
        root = start_tree(
            "root",
            [
                actor(STORE, Store, rt),
                actor(ANALYST, Sink, rt),
                actor(VERIFIER, Sink, rt),
                actor(COMMANDER, Sink, rt),
                actor(CONTEXT, ContextLoader, rt),
            ],
            Policy(),
            clock=clock,
            directory=rt.directory,
        )
        d = rt.directory
        from loguru import logger

        logger.remove()

        # -- order write-ahead -----------------------------------------------------------
        raw = raw_order_insert(raw_pg, n)
        actor_ms = []
        for i in range(n):
            t0 = time.perf_counter()
            assert d.ask(STORE, WriteOrder(order=order(i, "aegis")), 5.0).status == "new"
            actor_ms.append(time.perf_counter() - t0)
        print("order write-ahead (PostgreSQL)")
        print("  " + line("raw psycopg2 INSERT (autocommit)", raw))
        print("  " + line("store actor WriteOrder ask", actor_ms))

        # -- context load ------------------------------------------------------------------
        for sym in ("AAPL", "MSFT", "NVDA"):
            d.tell(STORE, PositionUpdate(symbol=sym, qty=5, avg_price=100, ts=time.time()))
        for i in range(60):
            rt.cache.push_price("AAPL", 100 + i * 0.01, time.time())

        def load(i: int, miss: bool) -> float:
            if miss:
                rt.cache.delete(K_POSITIONS)
            t0 = time.perf_counter()
            d.tell(
                CONTEXT, MarketEvent(event_id=f"ev-{i}", symbol="AAPL", price=100.0, ts=time.time())
            )
            return ARRIVED.get(timeout=5) - t0

        load(-1, True)  # warm the cache
        warm = [load(i, False) for i in range(n)]
        miss = [load(i, True) for i in range(n)]

        raw_warm = []
        for _ in range(n):
            t0 = time.perf_counter()
            raw_redis.lrange(prefix + "prices:AAPL", -60, -1)
            raw_redis.mget(
                [prefix + "kv:" + k for k in (K_POSITIONS, K_POSTURE, K_MODE, "session", "account")]
            )
            raw_warm.append(time.perf_counter() - t0)
        raw_miss = []
        with raw_pg.cursor() as cur:
            for _ in range(n):
                t0 = time.perf_counter()
                cur.execute("SELECT * FROM positions")
                cur.fetchall()
                cur.execute("SELECT * FROM mode_changes ORDER BY id DESC LIMIT 1")
                cur.fetchall()
                cur.execute("SELECT * FROM kv WHERE key = 'posture'")
                cur.fetchall()
                cur.execute(
                    "SELECT * FROM sessions WHERE closed_at IS NULL ORDER BY opened_at DESC LIMIT 1"
                )
                cur.fetchall()
                raw_miss.append(time.perf_counter() - t0)
        print("context load (event told -> Context at the commander)")
        print("  " + line("raw redis-py reads (lrange + mget)", raw_warm))
        print("  " + line("context loader, warm Redis", warm))
        print("  " + line("raw psycopg2 SELECTs (4 queries)", raw_miss))
        print("  " + line("context loader, cache miss -> store -> PG", miss))

        # -- decision writes -------------------------------------------------------------------
        m = n * 4

        def raw_decisions(tag: str) -> float:
            rows = []
            for i in range(m):  # built before the clock starts: the floor is the driver
                row = decision(i, tag).model_dump(mode="json")
                for k, v in row.items():  # JSON columns, as the store adapts them
                    if isinstance(v, dict | list) or k in ("analysis", "verdict", "decision"):
                        row[k] = None if v is None else json.dumps(v)
                rows.append(row)
            cols = list(rows[0])
            sql = (
                f"INSERT INTO decisions ({', '.join(cols)}) "
                f"VALUES ({', '.join(['%s'] * len(cols))}) ON CONFLICT DO NOTHING"
            )
            with raw_pg.cursor() as cur:
                t0 = time.perf_counter()
                for row in rows:
                    cur.execute(sql, [row[c] for c in cols])
                return m / (time.perf_counter() - t0)

        def actor_decisions(tag: str) -> float:
            before = d.ask(STORE, GetStatus(), 5.0)["writes"]
            t0 = time.perf_counter()
            for i in range(m):
                d.tell(STORE, decision(i, tag))
            after = d.ask(STORE, GetStatus(), 60.0)["writes"]  # queued behind every tell
            assert after - before == m, (before, after)
            return m / (time.perf_counter() - t0)

        # Interleaved, twice each, so neither side gets the quiet disk alone.
        raws, actors = [], []
        for r in range(2):
            raws.append(raw_decisions(f"raw{r}"))
            actors.append(actor_decisions(f"aegis{r}"))
        raw_rate, rate = statistics.median(raws), statistics.median(actors)
        print("decision writes (PostgreSQL, one autocommitted row each)")
        print(f"  {'raw psycopg2 INSERT':<44} {raw_rate:9.0f} rows/s")
        print(f"  {'store actor DecisionRecord tells':<44} {rate:9.0f} rows/s")
        raw_pg.close()
    finally:
        if root is not None:
            root.stop(timeout=5)
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        admin.close()
        r = redis.Redis.from_url(args.redis)
        for key in r.scan_iter(match=prefix + "*"):
            r.delete(key)


if __name__ == "__main__":
    main()
