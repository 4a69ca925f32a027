"""Bench: the three LLM roles at SPEC 5.2's rate, over real HTTP, on the default settings.

A fake LLM server (tests/llm_fake.py, in its own process so it does not share our GIL)
answers at the SPEC latencies: analyst 2 s, verifier 1.5 s, commander 1 s (real seconds;
`--scale` shrinks them, and the printout says so). Ticks arrive over a real websocket feed
(tests/feed_server.py, Alpaca protocol): 150 symbols, one tick each per 3 s = 50 events/s
(SPEC 5.2), then 600 symbols the same way = 200/s (4x), so per-symbol coalescing alone
cannot absorb the overload: the roles' saturation signal must. The only settings given
are the roles' backend and URL; worker pools, timeouts and tiers are the defaults.

Printed beside the raw baseline from the same run: the bare HTTP clients, no actors, an
unbounded thread pool making each event's calls (analyst || verifier, then commander)
at the same pace: what this machine and server deliver at that rate.

    python scripts/bench_roles.py [--seconds 20] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from feed_server import FeedServer, rfc3339  # noqa: E402
from llm_fake import FakeLlm  # noqa: E402

from aegis_actors.app import Aegis  # noqa: E402
from aegis_actors.llm import Endpoint, make_client  # noqa: E402
from aegis_actors.messages import GetStatus  # noqa: E402
from aegis_actors.runtime import ANALYST, COMMANDER, MARKET, VERIFIER, WATCHDOG  # noqa: E402
from aegis_actors.settings import load_settings  # noqa: E402
from supervisors import WallClock  # noqa: E402

SPEC_LATENCY = {"analyst": 2.0, "verifier": 1.5, "commander": 1.0}
TICK_EVERY_S = 3.0  # each symbol ticks once per 3 s
KEY, SECRET = "bench-key", "bench-secret"


def serve(latency: dict[str, float], urls: Any, stop: Any) -> None:
    """The fake LLM server in its own process."""
    srv = FakeLlm(default_latency=latency)
    urls.put(srv.url)
    stop.wait()
    srv.close()


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


# -- raw baseline: bare clients, an unbounded pool, same pace ------------------------------


def raw_baseline(url: str, rate: float, seconds: float) -> dict[str, Any]:
    clients = {
        r: make_client(
            Endpoint(url, "anthropic" if r == "commander" else "openai", "m"), pool_size=1000
        )
        for r in SPEC_LATENCY
    }
    ask = [{"role": "user", "content": "json please"}]
    pool = ThreadPoolExecutor(1000)
    cycles: list[float] = []
    failed = [0]
    lock = threading.Lock()

    def call(role: str) -> None:
        clients[role].complete(f"You are the {role} of a bench.", ask, timeout_s=10)

    def event(t0: float) -> None:
        try:
            v = pool.submit(call, "verifier")
            call("analyst")
            v.result()
            call("commander")
            with lock:
                cycles.append(time.perf_counter() - t0)
        except Exception:
            with lock:
                failed[0] += 1

    n = int(rate * seconds)
    start = time.perf_counter()
    futs = []
    for i in range(n):
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        futs.append(pool.submit(event, time.perf_counter()))
    wait(futs, timeout=60)
    pool.shutdown(wait=False)
    for c in clients.values():
        c.close()
    return {"events": n, "done": len(cycles), "failed": failed[0], "cycles": cycles}


# -- the tree ----------------------------------------------------------------------------


def tick_frame(symbol: str, price: float, i: int) -> str:
    t = {"T": "t", "S": symbol, "i": i, "x": "V", "p": price, "s": 100, "t": rfc3339(time.time())}
    return json.dumps([t])


def run_tree(llm_url: str, symbols: int, seconds: float, work: Path) -> dict[str, Any]:
    names = [f"S{i:04d}" for i in range(symbols)]
    feed = FeedServer("alpaca", KEY, SECRET).start()
    roles: dict[str, Any] = {r: {"backend": "llm", "url": llm_url} for r in SPEC_LATENCY}
    settings = load_settings(
        None,
        roles=roles,
        feed={"kind": "alpaca", "url": feed.url, "symbols": names, "key": KEY, "secret": SECRET},
        dashboard={"port": 0},
        run={"log_dir": str(work / "logs"), "log_level": "WARNING"},
        store={"sqlite_path": str(work / f"aegis-{symbols}.db")},
    )
    app = Aegis(settings, clock=WallClock(), stderr=False)
    rt = app.start()
    events: list[dict[str, Any]] = []
    rt.event_sinks.append(events.append)
    try:
        deadline = time.monotonic() + 20
        while feed.ready == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        rate = symbols / TICK_EVERY_S
        n = int(seconds * rate)
        peak_held = 0
        cpu0 = time.process_time()
        start = time.perf_counter()
        for i in range(n):
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            feed.send_frames([tick_frame(names[i % symbols], 100.0 + (i % 7) * 0.01, i)])
            if i % 50 == 0:
                peak_held = max(
                    peak_held, rt.directory.ask(MARKET, GetStatus(), 5.0).get("waiting", 0)
                )
        offered = n / (time.perf_counter() - start)
        # drain: every event dispatched has finished (or the 10 s whole-cycle limit hit);
        # the feed keeps printing the (non-tradable) VIX, so its silence tiers stay quiet
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            feed.send_frames([tick_frame(settings.feed.vix_symbol, 15.0, n)])
            market = rt.directory.ask(MARKET, GetStatus(), 5.0)
            if market["inflight"] == 0 and market.get("waiting", 0) == 0:
                break
            time.sleep(0.1)
        cpu = time.process_time() - cpu0
        market = rt.directory.ask(MARKET, GetStatus(), 5.0)
        watchdog = rt.directory.ask(WATCHDOG, GetStatus(), 5.0)
        roles_st = {
            r: rt.directory.ask(r, GetStatus(), 5.0) for r in (ANALYST, VERIFIER, COMMANDER)
        }
        mode = watchdog["mode"]
    finally:
        app.stop("bench over")
        feed.stop()
    kinds = [e.get("kind") for e in events if e.get("type") == "alert"]
    return {
        "symbols": symbols,
        "ticks": n,
        "offered": offered,
        "market": market,
        "outcomes": {str(k): v for k, v in watchdog["outcomes"].items()},
        "latency": watchdog["latency"],
        "mode": mode,
        "tier_alerts": kinds.count("llm_api"),
        "forced_posture": kinds.count("consecutive_failures"),
        "peak_held": peak_held,
        "cpu_s": cpu,
        "roles": roles_st,
    }


def show(res: dict[str, Any]) -> None:
    out = res["outcomes"]
    failed = out.get("failed", 0) + out.get("timeout", 0)
    lat = res["latency"]
    m = res["market"]
    print(
        f"  AEGIS, {res['symbols']} symbols x 1 tick/{TICK_EVERY_S:g}s = {res['offered']:.1f} "
        f"ticks/s offered ({res['ticks']} ticks): {sum(out.values())} events done, "
        f"failed {failed}; outcomes {out}"
    )
    dispatched = m.get("events", 0)
    print(
        f"    {dispatched} events admitted ({m['inflight']} still in flight, "
        f"{m.get('waiting', 0)} waiting after the drain); CPU "
        f"{res['cpu_s'] / max(1, dispatched) * 1000:.2f} ms per event (this process: feed + "
        "roles + tree)"
    )
    print(
        f"    cycle p50 {lat['cycle']['p50_ms']:.0f} ms p99 {lat['cycle']['p99_ms']:.0f} ms; "
        f"detect->analysis p99 {lat['detect_to_analysis']['p99_ms']:.1f} ms; "
        f"analysis p99 {lat['analysis']['p99_ms']:.0f} ms; "
        f"verification p99 {lat['verification']['p99_ms']:.0f} ms"
    )
    print(
        f"    gateway: shed by reason {m.get('shed', {})} (peak {res['peak_held']} waiting), "
        f"window now {m.get('window')} (max {m.get('max_window')})"
    )
    pools = ", ".join(
        f"{r} {st.get('workers')} workers ({st.get('saturations', 0)}x saturated, "
        f"{st.get('overloaded', 0)} overloaded, admits {st.get('capacity')} at "
        f"{st.get('latency_s')} s)"
        for r, st in res["roles"].items()
    )
    print(f"    pools: {pools}")
    print(
        f"    mode {res['mode']}; API tier alerts {res['tier_alerts']}; forced-defensive "
        f"alerts {res['forced_posture']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each offered run")
    ap.add_argument("--scale", type=float, default=1.0, help="LLM latency = SPEC x scale")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    urls, stop = ctx.Queue(), ctx.Event()
    latency = {r: s * args.scale for r, s in SPEC_LATENCY.items()}
    server = ctx.Process(target=serve, args=(latency, urls, stop))
    server.start()
    try:
        url = urls.get(timeout=30)
        lat = ", ".join(f"{r} {s:g} s" for r, s in latency.items())
        scaled = "" if args.scale == 1.0 else f" (SPEC x {args.scale}: time is scaled)"
        print(f"== roles: LLM latency {lat}{scaled}; default settings; {args.seconds:g} s per run")
        base = raw_baseline(url, 150 / TICK_EVERY_S, args.seconds)
        c = [x * 1000 for x in base["cycles"]]
        print(
            f"  raw baseline, bare clients, unbounded threads, {150 / TICK_EVERY_S:.0f} events/s: "
            f"{base['done']}/{base['events']} cycles done, failed {base['failed']}, "
            f"cycle p50 {pct(c, 50):.0f} ms p99 {pct(c, 99):.0f} ms "
            f"(floor {sum((latency['analyst'], latency['commander'])) * 1000:.0f} ms)"
        )
        with tempfile.TemporaryDirectory() as tmp:
            for symbols in (150, 600):
                show(run_tree(url, symbols, args.seconds, Path(tmp)))
    finally:
        stop.set()
        server.join(10)


if __name__ == "__main__":
    main()
