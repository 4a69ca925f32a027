"""Benchmarks: figures printed beside a raw baseline measured in the same run.

    python scripts/bench.py            # every section
    python scripts/bench.py spine      # one section: spine, or <area> for scripts/bench_<area>.py

spine: events per second through the whole tree on the rules backend, and per-hop latency
p50/p99, beside a raw 6-actor pykka chain doing nothing but forwarding.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pykka

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def aegis_tree(n: int, symbols: int, rate: float = 0.0) -> dict[str, object]:
    from aegis_actors.app import Aegis
    from aegis_actors.gateway.market import new_event_id
    from aegis_actors.messages import T0, GetStatus, MarketEvent
    from aegis_actors.runtime import MARKET, WATCHDOG
    from aegis_actors.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="aegis-bench-"))
    names = [f"S{i:04d}" for i in range(symbols)]
    settings = load_settings(
        None,
        feed={"symbols": names, "tick_interval_s": 3600.0},
        dashboard={"port": 0},
        run={"log_dir": str(tmp / "logs"), "log_level": "WARNING"},
        store={"sqlite_path": str(tmp / "aegis.db")},
        risk={"max_orders_per_minute": 1_000_000},
    )
    app = Aegis(settings, stderr=False)
    rt = app.start()
    now = time.time()
    for k, s in enumerate(names):  # a price history, so the analyst has something to read
        drift = 1.001 if k % 3 == 0 else (0.999 if k % 3 == 1 else 1.0)
        for j in range(40):
            rt.cache.push_price(s, 100.0 * drift**j, now - 40 + j)

    def finished() -> int:
        return int(
            sum(
                s.value
                for m in rt.metrics.events.collect()
                for s in m.samples
                if s.name.endswith("_total")
            )
        )

    t0 = time.perf_counter()
    for i in range(n):
        pace(t0, i, rate)
        s = names[i % symbols]
        rt.directory.tell(
            MARKET,
            MarketEvent(
                event_id=new_event_id(),
                symbol=s,
                price=100.0,
                ts=time.time(),
                stamps={T0: time.time()},
            ),
        )
    deadline = time.perf_counter() + 300
    while finished() < n - rt.metrics.coalesced._value.get() and time.perf_counter() < deadline:
        time.sleep(0.05)
    took = time.perf_counter() - t0
    status = rt.directory.ask(WATCHDOG, GetStatus(), 10.0)
    coalesced = int(rt.metrics.coalesced._value.get())
    app.stop("bench over")
    done = sum(status["outcomes"].values())
    return {
        "events": done,
        "coalesced": coalesced,
        "per_s": done / took,
        "latency": status["latency"],
        "outcomes": status["outcomes"],
    }


def spine(n: int = 5000) -> None:
    print("== spine: the whole tree (rules backend, paper broker, SQLite) vs a raw pykka chain")
    raw = raw_chain(n)
    tree = aegis_tree(n, symbols=max(50, n // 10))
    print(
        f"flood of {n}: raw 6-actor pykka chain {raw['per_s']:,.0f} msgs/s; AEGIS tree "
        f"{tree['per_s']:,.0f} events/s ({tree['events']} events through, "
        f"{tree['coalesced']} coalesced); ratio {tree['per_s'] / raw['per_s']:.3f}"
    )  # type: ignore[operator]
    rate, paced_n = 200.0, 1000
    raw_p = raw_chain(paced_n, rate)
    tree_p = aegis_tree(paced_n, symbols=paced_n, rate=rate)
    print(
        f"paced at {rate:.0f}/s: raw chain per hop p50 {raw_p['hop_p50_us']:.0f} us, "
        f"p99 {raw_p['hop_p99_us']:.0f} us; AEGIS per stage:"
    )
    for stage, st in tree_p["latency"].items():  # type: ignore[union-attr]
        if st["count"]:
            print(
                f"  {stage:<20} p50 {st['p50_ms']:8.2f} ms   p99 {st['p99_ms']:8.2f} ms "
                f"  (n={st['count']})"
            )
    print(f"  outcomes {tree_p['outcomes']}")


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
    p.add_argument("-n", type=int, default=5000, help="events for the spine section")
    args = p.parse_args()
    for section in args.sections or ["spine", *areas]:
        if section == "spine":
            spine(args.n)
        else:
            area(section)
        print()


if __name__ == "__main__":
    main()
