"""Gateway ingestion bench: ticks/s received, validated and coalesced, beside a raw
websocket-client receive loop measured in the same run; frame -> context latency.

An Alpaca-protocol server (tests/feed_server.py) runs in a child process so it does not
share this process's GIL, and blasts the same frames (trades for 1,000 symbols, 100 per
frame, as Alpaca batches them) to every client. Measured here:

1. raw: websocket-client `recv()` in a loop, then the same loop plus `json.loads`;
2. gateway: the production market actor (reader thread -> batched decode, validation,
   cache, execution batches, per-symbol intake) with the context loader, execution and
   posture replaced by probes that answer at once;
3. latency: a paced feed (5,000 and 20,000 ticks/s by default) through the same actor;
   the probe in the context loader's place records context entry minus the frame's
   receipt (t0).

    python scripts/bench_gateway.py [--ticks 200000] [--rates 5000,20000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import websocket  # noqa: E402

from aegis_actors.base import AegisActor  # noqa: E402
from aegis_actors.gateway.market import MarketFeed  # noqa: E402
from aegis_actors.logs import configure  # noqa: E402
from aegis_actors.messages import (  # noqa: E402
    T0,
    EventDone,
    GetStatus,
    MarketEvent,
    Outcome,
    Ticks,
)
from aegis_actors.runtime import (  # noqa: E402
    CONTEXT,
    EXECUTION,
    MARKET,
    POSTURE,
    STORE,
    WATCHDOG,
    Runtime,
)
from aegis_actors.settings import load_settings  # noqa: E402
from aegis_actors.tree import actor  # noqa: E402
from supervisors import Directory, Policy, WallClock, start_tree  # noqa: E402

SYMBOLS = [f"S{i:04d}" for i in range(1000)]
PER_FRAME = 100
KEY, SECRET = "bench-key", "bench-secret"


def make_frames(n_ticks: int, start_ts: float) -> list[str]:
    from feed_server import rfc3339

    frames, items = [], []
    for i in range(n_ticks):
        ts = start_ts + i * 1e-6
        items.append(
            {
                "T": "t",
                "S": SYMBOLS[i % len(SYMBOLS)],
                "i": i,
                "x": "V",
                "p": 100.0 + (i % 997) / 100,
                "s": 100,
                "t": rfc3339(ts),
                "z": "C",
            }
        )
        if len(items) == PER_FRAME:
            frames.append(json.dumps(items))
            items = []
    if items:
        frames.append(json.dumps(items))
    return frames


def serve(frames: list[str], rate: float, out: Any) -> None:
    """Child process: an Alpaca-protocol server greeting each client with `frames`."""
    from feed_server import FeedServer

    srv = FeedServer("alpaca", KEY, SECRET)
    srv.greeting, srv.greeting_rate = frames, rate
    srv.start()
    out.put(srv.url)
    threading.Event().wait()


class Server:
    def __init__(self, frames: list[str], rate: float = 0.0) -> None:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        self.proc = ctx.Process(target=serve, args=(frames, rate, q), daemon=True)
        self.proc.start()
        self.url: str = q.get(timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


# -- 1. the raw receive loop ----------------------------------------------------------


def raw_loop(url: str, n_frames: int, parse: bool) -> float:
    ws = websocket.create_connection(url, skip_utf8_validation=True)
    ws.recv()
    ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
    ws.recv()
    ws.send(json.dumps({"action": "subscribe", "trades": SYMBOLS, "quotes": [], "bars": []}))
    ws.recv()
    items = 0
    t0 = time.perf_counter()
    for _ in range(n_frames):
        frame = ws.recv()
        items += len(json.loads(frame)) if parse else 1
    took = time.perf_counter() - t0
    ws.close()
    return took


# -- 2/3. the market actor with probes around it --------------------------------------


class ContextProbe(AegisActor):
    """Stands where the context loader stands: notes latency, ends the event at once."""

    def on_start(self) -> None:
        self.lat_ms: list[float] = []
        self.first_t0: float | None = None

    def on_MarketEvent(self, e: MarketEvent) -> None:
        t0 = e.stamps[T0]
        self.first_t0 = t0 if self.first_t0 is None else min(self.first_t0, t0)
        self.lat_ms.append((self.clock.now() - t0) * 1000.0)
        self.send(MARKET, EventDone(event_id=e.event_id, symbol=e.symbol, outcome=Outcome.HOLD))

    def status(self) -> dict[str, Any]:
        return {"lat_ms": list(self.lat_ms), "first_t0": self.first_t0}


class Sink(AegisActor):
    """Execution, posture, watchdog, store: take anything, count Ticks batches."""

    def on_start(self) -> None:
        self.prints = 0
        self.last_batch_at = 0.0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Ticks):
            self.prints += len(message.ticks)
            self.last_batch_at = time.time()
            return None
        if isinstance(message, GetStatus):
            return {"prints": self.prints, "last_batch_at": self.last_batch_at}
        return None


def gateway(url: str, n_ticks: int, timeout_s: float = 120.0) -> dict[str, Any]:
    settings = load_settings(
        None,
        feed={"kind": "alpaca", "url": url, "symbols": SYMBOLS, "key": KEY, "secret": SECRET},
        dashboard={"port": 0},
    )
    clock = WallClock()
    directory = Directory()
    rt = Runtime(settings=settings, clock=clock, directory=directory)
    children = [
        actor(STORE, Sink, rt),
        actor(WATCHDOG, Sink, rt),
        actor(POSTURE, Sink, rt),
        actor(EXECUTION, Sink, rt),
        actor(CONTEXT, ContextProbe, rt),
        actor(MARKET, MarketFeed, rt),
    ]
    root = start_tree("bench", children, Policy(), clock=clock, directory=directory)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = directory.ask(MARKET, GetStatus(), timeout=5)
            if st["ticks"] + sum(st["bad_ticks"].values()) >= n_ticks:
                break
            time.sleep(0.01)
        st = directory.ask(MARKET, GetStatus(), timeout=5)
        probe = directory.ask(CONTEXT, GetStatus(), timeout=5)
        execution = directory.ask(EXECUTION, GetStatus(), timeout=5)
        lat, prints = probe["lat_ms"], execution["prints"]
        # from the first frame's receipt (the first event's t0) to the last batch handed on
        took = execution["last_batch_at"] - (probe["first_t0"] or execution["last_batch_at"])
    finally:
        root.stop(timeout=10)
    return {
        "took": max(took, 1e-9),
        "ticks": st["ticks"],
        "bad": sum(st["bad_ticks"].values()),
        "events": st["events"],
        "coalesced": st["coalesced"],
        "prints_to_execution": prints,
        "lat_ms": lat,
    }


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=200_000)
    ap.add_argument("--rates", default="5000,20000", help="paced ticks/s for latency, comma list")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        configure(tmp, level="ERROR", stderr=False)  # the JSON log stays on, as in production
        now = time.time()
        frames = make_frames(args.ticks, now - 10.0)
        print(
            f"{args.ticks:,} trades for {len(SYMBOLS)} symbols, {len(frames):,} frames "
            f"of {PER_FRAME}; server in a child process",
            flush=True,
        )

        srv = Server(frames)
        try:
            raw = raw_loop(srv.url, len(frames), parse=False)
            raw_parse = raw_loop(srv.url, len(frames), parse=True)
            gw = gateway(srv.url, args.ticks)
        finally:
            srv.stop()
        print(f"raw websocket-client recv loop     : {args.ticks / raw:>12,.0f} ticks/s")
        print(f"raw recv loop + json.loads         : {args.ticks / raw_parse:>12,.0f} ticks/s")
        print(
            f"gateway (received+validated+coalesced): {gw['ticks'] / gw['took']:>9,.0f} "
            f"ticks/s  ({gw['ticks']:,} ok, {gw['bad']} bad, {gw['events']:,} events, "
            f"{gw['coalesced']:,} coalesced, {gw['prints_to_execution']:,} to execution)"
        )
        met = "met" if gw["ticks"] / gw["took"] >= 20_000 else "NOT met"
        print(f"  target >= 20,000 ticks/s: {met}")

        for rate in (float(r) for r in args.rates.split(",")):
            paced_latency(rate, args.seconds)
        whole_tree(float(args.rates.split(",")[0]), args.seconds, Path(tmp))


def paced_latency(rate: float, seconds: float) -> None:
    n_paced = int(rate * seconds)
    frames = make_frames(n_paced, time.time() - 5.0)
    srv = Server(frames, rate=rate / PER_FRAME)
    try:
        lat = gateway(srv.url, n_paced)["lat_ms"]
    finally:
        srv.stop()
    print(
        f"frame -> context loader latency at {rate:,.0f} ticks/s "
        f"({len(lat):,} events): p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms, "
        f"max {max(lat) if lat else float('nan'):.2f} ms, "
        f"mean {statistics.fmean(lat) if lat else float('nan'):.2f} ms"
    )


def whole_tree(rate: float, seconds: float, tmp: Path) -> None:
    """The same paced feed into a whole AEGIS tree (rules roles, paper broker, SQLite): the
    watchdog's own detect_to_analysis histogram is frame receipt -> context loader."""
    import os

    from aegis_actors.app import Aegis

    os.environ["AEGIS_FEED__KEY"], os.environ["AEGIS_FEED__SECRET"] = KEY, SECRET
    n = int(rate * seconds)
    srv = Server(make_frames(n, time.time() - 5.0), rate=rate / PER_FRAME)
    try:
        settings = load_settings(
            None,
            feed={"kind": "alpaca", "url": srv.url, "symbols": SYMBOLS},
            dashboard={"port": 0},
            run={"log_dir": str(tmp / "logs"), "log_level": "ERROR"},
            store={"sqlite_path": str(tmp / "aegis.db")},
        )
        app = Aegis(settings, stderr=False)
        rt = app.start()
        try:
            deadline = time.monotonic() + seconds + 60
            while time.monotonic() < deadline:
                m = rt.directory.ask(MARKET, GetStatus(), timeout=5)
                if m["ticks"] >= n and m["inflight"] == 0:
                    break
                time.sleep(0.05)
            w = rt.directory.ask(WATCHDOG, GetStatus(), timeout=5)["latency"]
        finally:
            app.stop("bench over")
    finally:
        srv.stop()
    d, c = w["detect_to_analysis"], w["cycle"]
    print(
        f"whole tree at {rate:,.0f} ticks/s ({m['ticks']:,} ticks, {d['count']:,} events done): "
        f"frame -> context p50 {d['p50_ms']:.2f} ms, p99 {d['p99_ms']:.2f} ms; "
        f"whole cycle p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
