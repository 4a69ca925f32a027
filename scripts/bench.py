"""Benchmarks: figures printed beside a raw baseline measured in the same run.

    python scripts/bench.py            # every section
    python scripts/bench.py spine      # one section: spine, or <area> for scripts/bench_<area>.py

spine: the whole tree (rules backend, paper broker, SQLite) beside a raw 6-actor pykka
chain in the same run: the highest paced rate (one symbol per event in flight, nothing
coalesced) that holds every SLA for 30 s (`--quick`: 5 s), CPU microseconds per event,
then twice that rate to show the shedding (mode, restarts, shed by reason, records kept).
The trades come as production's do: an Alpaca-protocol server in a child process plays a
tape (a random walk per symbol) over a real websocket to the gateway's own reader. Every
event is counted once, by the watchdog, from the gateway's one report of its end.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import multiprocessing as mp
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pykka

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the shared test kit: the tape server


# -- the raw baseline: a 6-actor pykka chain ---------------------------------------------


class Hop(pykka.ThreadingActor):
    def __init__(
        self,
        nxt: pykka.ActorRef | None,
        done: list[float],
        finished: threading.Event,
        n: int,
        stamps: list[list[float]],
    ) -> None:
        super().__init__()
        self.nxt, self.done, self.finished, self.n, self.stamps = nxt, done, finished, n, stamps

    def on_receive(self, message: tuple[int, list[float]]) -> None:
        i, hops = message
        hops.append(time.perf_counter())
        if self.nxt is not None:
            self.nxt.tell((i, hops))
            return
        self.stamps.append(hops)
        self.done.append(time.perf_counter())
        if len(self.done) == self.n:
            self.finished.set()


def raw_chain(n: int, rate: float = 0.0) -> dict[str, float]:
    done: list[float] = []
    stamps: list[list[float]] = []
    finished = threading.Event()
    nxt = None
    refs = []
    for _ in range(6):
        nxt = Hop.start(nxt, done, finished, n, stamps)
        refs.append(nxt)
    head = refs[-1]
    t0 = time.perf_counter()
    for i in range(n):
        pace(t0, i, rate)
        head.tell((i, [time.perf_counter()]))
    finished.wait(120)
    took = time.perf_counter() - t0
    for r in refs:
        r.stop()
    hop_us = [(b - a) * 1e6 for s in stamps for a, b in zip(s, s[1:], strict=False)]
    return {"per_s": n / took, "hop_p50_us": pct(hop_us, 50), "hop_p99_us": pct(hop_us, 99)}


def pace(t0: float, i: int, rate: float) -> None:
    """Offer load at `rate` per second (0 = as fast as possible)."""
    if rate > 0:
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


# -- the whole tree ----------------------------------------------------------------------

FEED_BATCH = 100  # trades per frame at most, as Alpaca batches them
TAPE_KEY, TAPE_SECRET = "bench-key", "bench-secret"  # the tape server's (not a secret)
SLA_DETECT_P99_MS = 50.0  # detect -> analysis p99 a sustained rate must hold (SPEC 5.1)


def price_history(k: int, n: int = 40) -> list[float]:
    """A symbol's last `n` prices before the tape: up, down or flat by turns."""
    drift = 1.001 if k % 3 == 0 else (0.999 if k % 3 == 1 else 1.0)
    return [round(100.0 * drift**j, 2) for j in range(n)]


def start_tree(history: dict[str, list[float]], tmp: Path, url: str) -> tuple[Any, Any]:
    """The default tree (rules backend, paper broker, SQLite) fed by the tape at `url`, with
    each symbol's price `history` in its cache (so the analyst has something to read)."""
    from aegis_actors.app import Aegis
    from aegis_actors.settings import load_settings

    settings = load_settings(
        None,
        feed={"kind": "alpaca", "url": url, "symbols": list(history)},
        dashboard={"port": 0},
        run={"log_dir": str(tmp / "logs")},
        store={"sqlite_path": str(tmp / "aegis.db")},
        broker={"paper_state_path": str(tmp / "paper.json")},  # each run its own book
        risk={"max_orders_per_minute": 1_000_000},
    )
    app = Aegis(settings, stderr=False)
    rt = app.start()
    now = time.time()
    for s, prices in history.items():
        for j, price in enumerate(prices):
            rt.cache.push_price(s, price, now - len(prices) + j)
    return app, rt


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far per live thread of this process, by thread name without its
    number (one per actor: `ContextLoader`, `Store`, ...; the driver is `MainThread`).
    Linux's per-thread scheduler clock (ns), user and kernel time alike: a thread's
    wake-ups are counted where they are paid."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            with open(f"/proc/self/task/{t.native_id}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        base, _, num = t.name.rpartition("-")
        name = base if base and num.isdigit() else t.name
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


class GcPauses:
    """The longest garbage-collection pause per generation while a run is timed (a stall
    the whole tree waits for: every actor thread needs the GIL)."""

    def __init__(self) -> None:
        self.longest: dict[int, float] = {}
        self.count: dict[int, int] = {}
        self._t = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
            return
        g, ms = info["generation"], (time.perf_counter() - self._t) * 1e3
        self.longest[g] = max(self.longest.get(g, 0.0), ms)
        self.count[g] = self.count.get(g, 0) + 1

    def show(self) -> str:
        return ", ".join(
            f"gen{g} x{self.count[g]} max {self.longest[g]:.0f} ms" for g in sorted(self.count)
        )


def log_summary(log: Path, top: int = 3) -> list[str]:
    """The run's most frequent ERROR, then WARNING lines (ids left out), with their counts: what
    a failed run says about itself."""
    seen: dict[str, int] = {}
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            text = re.sub(r"\b(ev|ae|al|dc)-[0-9a-f]+\b", "<id>", str(rec.get("msg", "")))
            text = re.sub(r"\d+", "N", text)[:120]
            key = f"{rec['level']} {rec.get('actor')}: {text}"
            seen[key] = seen.get(key, 0) + 1
    worst = sorted(seen.items(), key=lambda kv: (kv[0].startswith("WARNING"), -kv[1]))
    return [f"{n} x {k}" for k, n in worst[:top]]


def store_queue(rt: Any) -> int:
    from aegis_actors.runtime import STORE

    ref = rt.directory.get(STORE)
    return ref.actor_inbox.qsize() if ref is not None else 0


def tree_run(rate: float, seconds: float, *, flood_n: int = 0) -> dict[str, Any]:
    """Offer `rate` events/s for `seconds` (or a flood of `flood_n`), one symbol per event
    in flight, then wait until every event is done and the store's queue is empty.

    The trades come the way production's do: an Alpaca-protocol server in a child process
    (the exchange: it does not share this process's GIL) plays a tape over a real
    websocket, and the gateway's reader, decoder, validation, cache and execution price
    batches all run in this process and are counted. Each event is counted once, by the
    watchdog (the gateway reports each end once). CPU is the process's CPU time from the
    first trade to the drained store."""
    from feed_server import serve_tape

    from aegis_actors.messages import GetStatus
    from aegis_actors.runtime import MARKET, WATCHDOG

    n = flood_n or int(rate * seconds)
    # a symbol comes back every ~2 s: one event per symbol in flight, nothing to coalesce
    symbols = max(50, min(n, int(rate * 2) if rate else n))
    tmp = Path(tempfile.mkdtemp(prefix="aegis-bench-"))
    names = [f"S{i:05d}" for i in range(symbols)]
    history = {s: price_history(k) for k, s in enumerate(names)}
    ctx = mp.get_context("spawn")
    go, urls = ctx.Event(), ctx.Queue()
    tape = ctx.Process(
        target=serve_tape,
        args=(names, rate, n, go, urls),
        kwargs={
            "start_prices": [history[s][-1] for s in names],  # the tape goes on from there
            "per_frame": FEED_BATCH,
            "key": TAPE_KEY,
            "secret": TAPE_SECRET,
        },
        daemon=True,
    )
    tape.start()
    url = urls.get(timeout=30)
    os.environ["AEGIS_FEED__KEY"], os.environ["AEGIS_FEED__SECRET"] = TAPE_KEY, TAPE_SECRET
    app, rt = start_tree(history, tmp, url)
    m = rt.metrics
    wait_until = time.perf_counter() + 30
    while not rt.directory.ask(MARKET, GetStatus(), 5.0)["link"]["connected"]:
        if time.perf_counter() > wait_until:
            raise RuntimeError(f"the tree did not connect to the tape at {url}")
        time.sleep(0.01)

    def finished() -> int:
        return int(
            sum(s.value for f in m.events.collect() for s in f.samples if s.name.endswith("_total"))
        )

    max_q = 0
    cpu0 = thread_cpu()
    gcp = GcPauses().__enter__()
    c0, t0 = time.process_time(), time.perf_counter()
    go.set()
    offered_by = t0 + (n / rate if rate else 0.0)
    while time.perf_counter() < offered_by:
        max_q = max(max_q, store_queue(rt))
        time.sleep(0.01)
    offered_s = time.perf_counter() - t0
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        q = store_queue(rt)
        max_q = max(max_q, q)
        if finished() >= n - m.total("aegis_events_shed_total") and q == 0:
            break
        time.sleep(0.01)
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    gcp.__exit__()
    cpu1 = thread_cpu()
    by_thread = {k: (v - cpu0.get(k, 0.0)) / max(1, n) * 1e6 for k, v in cpu1.items()}
    drained_s = took - offered_s
    status = rt.directory.ask(WATCHDOG, GetStatus(), 10.0)
    market = rt.directory.ask(MARKET, GetStatus(), 10.0)
    out = {
        "offered": n,
        "ticks": market["ticks"],  # trades the gateway took in (valid: the tape has no bad ones)
        "rate": rate,
        "done": sum(status["outcomes"].values()),
        "outcomes": {str(k): v for k, v in status["outcomes"].items()},
        "per_s": finished() / took,
        "cpu_us": cpu / max(1, n) * 1e6,
        "cpu_us_by_thread": {k: v for k, v in sorted(by_thread.items(), key=lambda x: -x[1])},
        "latency": status["latency"],
        "mode": status["mode"],
        "restarts": int(m.total("aegis_restarts_total")),
        "coalesced": int(m.value("aegis_events_coalesced_total")),
        "shed": int(m.total("aegis_events_shed_total")),
        "store_q_max": max_q,
        "drain_s": drained_s,
        "shed_by": {
            s.labels["reason"]: int(s.value)
            for f in m.shed.collect()
            for s in f.samples
            if s.name.endswith("_total")
        },
    }
    app.stop("bench over")
    tape.terminate()
    tape.join(5)
    out["gc"] = gcp.show()
    out["log"] = log_summary(tmp / "logs" / "aegis.jsonl")
    db = sqlite3.connect(tmp / "aegis.db")
    out["decisions"] = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    db.close()
    return out


def sustained(run: dict[str, Any]) -> tuple[bool, str]:
    """Whether a paced run held every SLA; the first reason it did not."""
    lat = run["latency"]
    fails = {k: v for k, v in run["outcomes"].items() if k in ("failed", "timeout")}
    checks = [
        (run["ticks"] == run["offered"], f"{run['offered'] - run['ticks']} trades not taken in"),
        (run["done"] == run["offered"], f"{run['offered'] - run['done']} events not done"),
        (not fails, f"failed {fails}"),
        (
            lat["detect_to_analysis"]["p99_ms"] < SLA_DETECT_P99_MS,
            f"detect->analysis p99 {lat['detect_to_analysis']['p99_ms']:.1f} ms",
        ),
        (lat["cycle"]["p99_ms"] < 4000.0, f"cycle p99 {lat['cycle']['p99_ms']:.0f} ms"),
        (run["restarts"] == 0, f"{run['restarts']} restarts"),
        (run["mode"] == "normal", f"mode {run['mode']}"),
        (
            run["coalesced"] == 0 and run["shed"] == 0,
            f"coalesced {run['coalesced']} shed {run['shed']}",
        ),
        (
            run["drain_s"] < 2.0,
            f"store/pipeline drained {run['drain_s']:.1f}s after the last event",
        ),
    ]
    for ok, why in checks:
        if not ok:
            return False, why
    return True, "ok"


def show(run: dict[str, Any]) -> str:
    lat = run["latency"]
    return (
        f"{run['rate']:>6.0f}/s offered x {run['offered']:>6}: {run['per_s']:7,.0f} events/s done, "
        f"CPU {run['cpu_us']:5.0f} us/event, detect->analysis p99 "
        f"{lat['detect_to_analysis']['p99_ms']:6.1f} ms, "
        f"cycle p99 {lat['cycle']['p99_ms']:7.1f} ms, "
        f"store queue max {run['store_q_max']}, mode {run['mode']}, restarts {run['restarts']}, "
        f"shed {run['shed']}, outcomes {run['outcomes']}"
    )


def raw_cpu_us(n: int) -> float:
    c0 = time.process_time()
    raw_chain(n)
    return (time.process_time() - c0) / n * 1e6


def spine(n: int = 5000, seconds: float = 30.0, rates: list[float] | None = None) -> None:
    print("== spine: the whole tree (rules backend, paper broker, SQLite) vs a raw pykka chain")
    raw = raw_chain(n)
    raw_us = raw_cpu_us(n)
    flood = tree_run(0.0, 0.0, flood_n=n)
    print(
        f"flood of {n}: raw 6-actor pykka chain {raw['per_s']:,.0f} msgs/s, "
        f"CPU {raw_us:.0f} us per message (6 hops); AEGIS tree offered {n} at once: "
        f"{flood['done']} done (each counted once, outcomes {flood['outcomes']}), shed by "
        f"reason {flood['shed_by']}, CPU {flood['cpu_us'] * n / max(1, flood['done']):.0f} us "
        f"per event done"
    )
    c0 = time.process_time()
    raw_p = raw_chain(min(n, 2000), 1000.0)
    paced_us = (time.process_time() - c0) / min(n, 2000) * 1e6
    print(
        f"raw chain paced at 1000/s: per hop p50 {raw_p['hop_p50_us']:.0f} us, "
        f"p99 {raw_p['hop_p99_us']:.0f} us; CPU {paced_us / 6:.0f} us per hop that wakes an "
        f"idle thread (vs {raw_us / 6:.1f} us per hop in the flood)"
    )
    print(
        f"sustained rate (each run {seconds:.0f}s; SLA: detect->analysis p99 < "
        f"{SLA_DETECT_P99_MS:.0f} ms, cycle p99 < 4 s, none failed/restarted/shed, store drained):"
    )
    best: dict[str, Any] | None = None
    for rate in rates or [250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0]:
        run = tree_run(rate, seconds)
        ok, why = sustained(run)
        print(f"  {'PASS' if ok else 'FAIL'} {show(run)}" + ("" if ok else f"  <- {why}"))
        print(f"         GC pauses: {run['gc']}")
        if not ok:
            for line in run["log"]:
                print(f"         log: {line}")
            break
        best = run
    if best is None:
        print("sustained: below the lowest rate tried")
        return
    print(
        f"sustained: {best['rate']:,.0f} events/s at {best['cpu_us']:.0f} us CPU/event "
        f"(raw pykka chain: {raw['per_s']:,.0f} msgs/s, {raw_us:.0f} us CPU per 6-hop message)"
    )
    print(
        "  CPU us/event by thread: "
        + ", ".join(f"{k} {v:.0f}" for k, v in best["cpu_us_by_thread"].items() if v >= 1)
    )
    for stage, st in best["latency"].items():
        if st["count"]:
            print(
                f"  {stage:<20} p50 {st['p50_ms']:8.2f} ms   p99 {st['p99_ms']:8.2f} ms "
                f"  (n={st['count']})"
            )
    over = tree_run(2 * best["rate"], seconds)
    print(
        f"overload at 2x ({over['rate']:,.0f}/s offered): mode {over['mode']}, restarts "
        f"{over['restarts']}, shed by reason {over['shed_by']}, outcomes {over['outcomes']}, "
        f"{over['done']} events done + {over['shed']} shed = {over['done'] + over['shed']} of "
        f"{over['offered']}; decision records {over['decisions']} "
        f"({over['done'] - over['decisions']} missing), CPU {over['cpu_us']:.0f} us/event"
    )


def area(name: str) -> None:
    path = ROOT / "scripts" / f"bench_{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    # registered under its name first: a spawned worker (multiprocessing pickles functions
    # by module and name) must find this module, not load a second copy of it
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    saved, sys.argv = sys.argv, [str(path)]  # each area parses its own (default) arguments
    try:
        mod.main()
    finally:
        sys.argv = saved


def main() -> None:
    areas = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "scripts").glob("bench_*.py"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("sections", nargs="*", help=f"spine, {', '.join(areas)} (default: all)")
    p.add_argument("-n", type=int, default=5000, help="events for the spine flood")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each paced spine run")
    p.add_argument("--quick", action="store_true", help="spine: 5 s paced runs")
    p.add_argument("--rates", default="", help="spine: paced rates to try, e.g. 1000,2000")
    args = p.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r] or None
    for section in args.sections or ["spine", *areas]:
        if section == "spine":
            spine(args.n, 5.0 if args.quick else args.seconds, rates)
        else:
            area(section)
        print()


if __name__ == "__main__":
    main()
