"""Execution throughput and order -> accepted latency, beside raw baselines.

Figures (SPEC 5.2: 200 orders a minute; goal on paper >= 100x that):
  1. the execution core on the paper broker (risk, mismatch gate, write-ahead in memory)
  2. the Execution actor in a tree with the real Store actor (SQLite write-ahead), paper
  3. the execution core on the Alpaca REST broker against the local 127.0.0.1 server
Baselines in the same run: the paper broker's bare submit, and a bare POST /v2/orders.
The rate limit is lifted for the measurement (it would cap every figure at 200/min).

    python scripts/bench_execution.py [--orders N] [--rest-orders N]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from loguru import logger  # noqa: E402

from aegis_actors.brokers import BrokerOrder, OrderType, PaperBroker, Side  # noqa: E402
from aegis_actors.brokers.alpaca import AlpacaBroker  # noqa: E402
from aegis_actors.brokers.alpaca_sim import AlpacaSim  # noqa: E402
from aegis_actors.execution.core import ExecutionCore  # noqa: E402
from aegis_actors.messages import (  # noqa: E402
    DECISION,
    Action,
    Decision,
    GetStatus,
    Msg,
    Order,
    Posture,
    Tick,
    WriteAhead,
    WriteAheadAck,
)
from aegis_actors.metrics import Metrics  # noqa: E402
from aegis_actors.settings import Settings  # noqa: E402

SYMBOLS = [f"S{i:03d}" for i in range(200)]


def bench_settings(**extra: Any) -> Settings:
    big = {"entry_size": 0.001, "stop_loss": -0.5, "take_profit": 5.0, "max_positions": 10_000}
    return Settings(
        risk={
            "max_orders_per_minute": 10_000_000,
            "daily_loss_limit_pct": 100.0,
            "minute_loss_limit_pct": 100.0,
        },
        posture={"guerrilla": {**big, "limit_ratio": 0.0}},
        broker={"capital": 10_000_000.0},
        **extra,
    )


class MemPorts:
    def __init__(self) -> None:
        self.ledger: set[str] = set()

    def send(self, name: str, message: Msg) -> bool:
        return True

    def write_ahead(self, order: Order) -> WriteAheadAck:
        if order.client_order_id in self.ledger:
            return WriteAheadAck(status=WriteAhead.DUPLICATE)
        self.ledger.add(order.client_order_id)
        return WriteAheadAck(status=WriteAhead.NEW)

    def current_posture(self) -> Posture:
        return Posture.GUERRILLA

    def ask(self, name: str, message: Msg, timeout: float, reply: type[Any]) -> Any:
        raise TimeoutError(name)

    def run_stopping(self) -> bool:
        return False

    def recent_price(self, symbol: str) -> float | None:
        return None

    def publish(self, positions: dict[str, Any], account: dict[str, Any]) -> None:
        pass


class Quiet:
    def bind(self, **_kw: Any) -> Quiet:
        return self

    def __getattr__(self, _name: str) -> Any:
        return lambda *a, **k: None


def decisions(n: int, now: Any) -> Any:
    """Buy then close, round robin over many symbols: every decision is one order."""
    for i in range(n):
        symbol = SYMBOLS[(i // 2) % len(SYMBOLS)]
        yield Decision(
            event_id=f"ev-{i}",
            decision_id=f"bench-{i}",
            symbol=symbol,
            action=Action.BUY if i % 2 == 0 else Action.CLOSE,
            size_fraction=1.0,
            confidence=0.9,
            posture=Posture.GUERRILLA,
            reference_price=100.0,
            stamps={DECISION: now()},
        )


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else 0.0


def run_core(broker: Any, n: int, prime: Any) -> tuple[float, float, float]:
    core = ExecutionCore(broker, bench_settings(), time.monotonic, MemPorts(), Metrics(), Quiet())
    for s in SYMBOLS:
        prime(s)
        core.tick(Tick(symbol=s, price=100.0, ts=time.time()))
    lat: list[float] = []
    t0 = time.perf_counter()
    for d in decisions(n, time.monotonic):
        a = time.perf_counter()
        core.decide(d)
        lat.append((time.perf_counter() - a) * 1000)
    wall = time.perf_counter() - t0
    assert core.stats["orders"] == n, core.stats
    return n / wall * 60, pct(lat, 50), pct(lat, 99)


def run_actor_tree(n: int) -> float:
    """The Execution actor with the real Store actor (SQLite write-ahead) in a tree."""
    from aegis_actors.execution.actor import Execution
    from aegis_actors.runtime import EXECUTION, STORE, Runtime
    from aegis_actors.store.actor import Store
    from supervisors import ChildSpec, Directory, Policy, Strategy, WallClock, start_tree

    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(store={"sqlite_path": str(Path(tmp) / "bench.db")})
        clock = WallClock()
        directory = Directory()
        rt = Runtime(settings=settings, clock=clock, directory=directory)
        broker = PaperBroker(capital=settings.broker.capital, clock_now=time.time)
        for s in SYMBOLS:
            broker.on_price(s, 100.0, time.time())
        specs = [
            ChildSpec(STORE, lambda ctx: Store.start(ctx, rt)),
            ChildSpec(EXECUTION, lambda ctx: Execution.start(ctx, rt, broker)),
        ]
        handle = start_tree(
            "root", specs, Policy(strategy=Strategy.ONE_FOR_ONE), clock=clock, directory=directory
        )
        for s in SYMBOLS:
            directory.tell(EXECUTION, Tick(symbol=s, price=100.0, ts=time.time()))
        t0 = time.perf_counter()
        for d in decisions(n, clock.now):
            directory.tell(EXECUTION, d)
        # the status ask waits behind every decision still queued (each a durable
        # write-ahead commit): on a slow or busy disk that is minutes, not a hang
        while directory.ask(EXECUTION, GetStatus(), 600.0)["orders"] < n:
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        handle.stop()
        return n / wall * 60


def raw_paper(n: int) -> float:
    b = PaperBroker(capital=1e9)
    b.on_price("X", 100.0, 0.0)
    t0 = time.perf_counter()
    for i in range(n):
        b.submit(
            BrokerOrder(f"r{i}", "X", Side.BUY if i % 2 == 0 else Side.SELL, 1.0, OrderType.MARKET)
        )
    return n / (time.perf_counter() - t0) * 60


def raw_rest(sim: AlpacaSim, n: int) -> tuple[float, float, float]:
    s = requests.Session()
    s.headers.update({"APCA-API-KEY-ID": sim.key_id, "APCA-API-SECRET-KEY": sim.secret_key})
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        a = time.perf_counter()
        s.post(
            sim.url + "/v2/orders",
            json={
                "symbol": "X",
                "qty": "1",
                "side": "buy" if i % 2 == 0 else "sell",
                "type": "market",
                "time_in_force": "day",
                "client_order_id": f"raw{i}",
            },
        )
        lat.append((time.perf_counter() - a) * 1000)
    return n / (time.perf_counter() - t0) * 60, pct(lat, 50), pct(lat, 99)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=20_000)
    ap.add_argument("--rest-orders", type=int, default=1_000)
    args = ap.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    logging.getLogger("supervisors").setLevel(logging.ERROR)  # no actor for EventDone here

    print(f"SPEC 5.2 target: 200 orders/min; goal on paper: >= {200 * 100:,}/min")
    raw = raw_paper(args.orders)
    print(f"baseline  paper broker bare submit            {raw:>14,.0f} orders/min")
    paper = PaperBroker(capital=10_000_000.0, clock_now=time.time)
    rate, p50, p99 = run_core(paper, args.orders, lambda s: paper.on_price(s, 100.0, time.time()))
    print(
        f"execution core -> paper                       {rate:>14,.0f} orders/min"
        f"  ({rate / 200:,.0f}x SPEC)  order->accepted p50 {p50:.3f} ms  p99 {p99:.3f} ms"
    )
    n_actor = min(args.orders, 5_000)
    rate = run_actor_tree(n_actor)
    print(
        f"Execution actor + Store (SQLite) -> paper     {rate:>14,.0f} orders/min"
        f"  ({rate / 200:,.0f}x SPEC)"
    )

    sim = AlpacaSim(cash=1e12).start()
    try:
        for s in [*SYMBOLS, "X"]:
            sim.set_price(s, 100.0)
        rrate, r50, r99 = raw_rest(sim, args.rest_orders)
        print(
            f"baseline  bare POST /v2/orders (127.0.0.1)    {rrate:>14,.0f} orders/min"
            f"  p50 {r50:.2f} ms  p99 {r99:.2f} ms"
        )
        rest = AlpacaBroker(sim.url, sim.key_id, sim.secret_key, poll_every_s=1.0)
        rate, p50, p99 = run_core(rest, args.rest_orders, lambda s: None)
        print(
            f"execution core -> Alpaca REST (127.0.0.1)     {rate:>14,.0f} orders/min"
            f"  ({rate / 200:,.0f}x SPEC)  order->accepted p50 {p50:.2f} ms  p99 {p99:.2f} ms"
        )
        print(
            f"  (SLA order->accepted: target 500 ms, warning 1,000 ms, critical 2,000 ms; "
            f"sim created {sum(sim.created.values())} orders for {len(sim.created)} ids)"
        )
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
