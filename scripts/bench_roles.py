"""Bench: the full decision cycle on LLM roles, parallel vs sequential verification.

The three roles talk over real HTTP to a local fake LLM server (tests/llm_fake.py) whose
scripted latencies are the SPEC's 2 s / 1.5 s / 1 s scaled down by SCALE (real time),
while events are offered at 50 per second across many symbols. Printed beside the raw
baseline measured in the same run: the same three calls made back to back by the bare
client, without actors (the floor any pipeline can reach). Figures are also shown
scaled back up to SPEC seconds.

    python scripts/bench_roles.py [--seconds 6] [--rate 50] [--scale 0.1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from llm_fake import FakeLlm  # noqa: E402

from aegis_actors.app import Aegis  # noqa: E402
from aegis_actors.llm import Endpoint, make_client  # noqa: E402
from aegis_actors.messages import GetStatus, MarketEvent  # noqa: E402
from aegis_actors.runtime import MARKET, WATCHDOG  # noqa: E402
from aegis_actors.settings import load_settings  # noqa: E402
from supervisors import WallClock  # noqa: E402

SPEC_LATENCY = {"analyst": 2.0, "verifier": 1.5, "commander": 1.0}


def serve(latency: dict[str, float], urls: Any, stop: Any) -> None:
    """The fake LLM server in its own process, so it does not share the GIL with AEGIS."""
    srv = FakeLlm(default_latency=latency)
    urls.put(srv.url)
    stop.wait()
    srv.close()


def raw_baseline(url: str, rounds: int) -> dict[str, float]:
    """The bare clients, no actors: analyst then commander (parallel floor), and all three."""
    sys_prompt = {r: f"You are the {r} of a bench." for r in SPEC_LATENCY}
    clients = {
        r: make_client(Endpoint(url, "anthropic" if r == "commander" else "openai", "m"))
        for r in SPEC_LATENCY
    }
    ask = [{"role": "user", "content": "json please"}]
    two, three = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        clients["analyst"].complete(sys_prompt["analyst"], ask, timeout_s=10)
        clients["commander"].complete(sys_prompt["commander"], ask, timeout_s=10)
        two.append(time.perf_counter() - t)
        t = time.perf_counter()
        for r in ("analyst", "verifier", "commander"):
            clients[r].complete(sys_prompt[r], ask, timeout_s=10)
        three.append(time.perf_counter() - t)
    return {
        "parallel_floor_s": statistics.median(two),
        "sequential_floor_s": statistics.median(three),
    }


def run_mode(url: str, parallel: bool, seconds: float, rate: float, work: Path) -> dict[str, Any]:
    symbols = [f"S{i:03d}" for i in range(64)]
    roles = {}
    for r in SPEC_LATENCY:
        cfg: dict[str, Any] = {"backend": "llm", "url": url, "workers": 64}
        if r == "commander":
            cfg.update(api="anthropic", model="claude-opus-4-1")
        roles[r] = cfg
    settings = load_settings(
        None,
        roles={**roles, "parallel_verification": parallel},
        feed={"symbols": symbols, "tick_interval_s": 1e6},
        dashboard={"port": 0},
        run={"log_dir": str(work / "logs"), "log_level": "WARNING"},
        store={"sqlite_path": str(work / f"aegis-{parallel}.db")},
        watchdog={"heartbeat_every_s": 60.0},
    )
    app = Aegis(settings, clock=WallClock(), stderr=False)
    rt = app.start()
    try:
        n = int(seconds * rate)
        t_start = time.perf_counter()
        for i in range(n):
            due = t_start + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            sym = symbols[i % len(symbols)]
            rt.cache.push_price(sym, 100.0 + (i % 7) * 0.01, rt.clock.now())
            ev = MarketEvent(
                event_id=f"ev-bench-{parallel}-{i}", symbol=sym, price=100.0, ts=rt.clock.now()
            )
            rt.directory.tell(MARKET, ev)
        offered = n / (time.perf_counter() - t_start)
        deadline = time.monotonic() + 30
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = rt.directory.ask(WATCHDOG, GetStatus(), 5.0)
            if sum(status["outcomes"].values()) >= n:
                break
            time.sleep(0.05)
        return {"offered_per_s": offered, "events": n, **status}
    finally:
        app.stop("bench over")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--scale", type=float, default=0.1)
    args = ap.parse_args()
    scale = args.scale
    ctx = multiprocessing.get_context("spawn")
    urls, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(
        target=serve, args=({r: s * scale for r, s in SPEC_LATENCY.items()}, urls, stop)
    )
    server.start()
    try:
        url = urls.get(timeout=30)
        base = raw_baseline(url, rounds=5)
        with tempfile.TemporaryDirectory() as tmp:
            results = {
                p: run_mode(url, p, args.seconds, args.rate, Path(tmp)) for p in (True, False)
            }
    finally:
        stop.set()
        server.join(10)
    lat = ", ".join(f"{r} {s * scale * 1000:.0f} ms" for r, s in SPEC_LATENCY.items())
    print(f"scripted LLM latency: {lat} (SPEC seconds x {scale})")
    two, three = base["parallel_floor_s"] * 1000, base["sequential_floor_s"] * 1000
    print(
        f"raw baseline, bare clients back to back: analyst+commander {two:.1f} ms, "
        f"all three {three:.1f} ms"
    )
    print(
        f"{'mode':<11}{'offered/s':>10}{'done':>6}{'cycle p50':>11}{'p99':>9}"
        f"{'overhead p50':>14}{'p99 @SPEC':>11}{'p50/floor':>11}{'detect->analysis p99':>22}"
    )
    cycles: dict[bool, float] = {}
    for parallel, res in results.items():
        c = res["latency"]["cycle"]
        d = res["latency"]["detect_to_analysis"]
        floor = base["parallel_floor_s" if parallel else "sequential_floor_s"] * 1000
        cycles[parallel] = c["p50_ms"]
        # at SPEC scale the LLM time grows by 1/scale; the pipeline's own overhead does not
        chain = SPEC_LATENCY["analyst"] + SPEC_LATENCY["commander"]
        if not parallel:
            chain += SPEC_LATENCY["verifier"]
        at_spec = chain + (c["p99_ms"] - floor) / 1000
        print(
            f"{'parallel' if parallel else 'sequential':<11}{res['offered_per_s']:>10.1f}"
            f"{sum(res['outcomes'].values()):>6}{c['p50_ms']:>9.1f}ms{c['p99_ms']:>7.1f}ms"
            f"{c['p50_ms'] - floor:>12.1f}ms{at_spec:>10.2f}s{c['p50_ms'] / floor:>11.2f}"
            f"{d['p99_ms']:>19.2f} ms"
        )
    saved = cycles[False] - cycles[True]
    verifier_ms = SPEC_LATENCY["verifier"] * scale * 1000
    print(
        f"parallel saves {saved:.1f} ms at p50 = {saved / verifier_ms:.2f} x the verifier's "
        "latency (goal ~1.0); parallel p99 goal <= 3.2 s at SPEC scale"
    )


if __name__ == "__main__":
    main()
