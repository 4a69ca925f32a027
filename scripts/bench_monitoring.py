"""What monitoring costs: pipeline events/s with the watchdog and dashboard on, versus off
(a bare watchdog that only counts events and answers mode requests; no dashboard), in one
run, on the same synthetic feed and the same virtual clock schedule.

    python scripts/bench_monitoring.py [--seconds 30] [--symbols 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pykka
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aegis_actors.tree as tree  # noqa: E402
from aegis_actors.app import Aegis  # noqa: E402
from aegis_actors.base import AegisActor  # noqa: E402
from aegis_actors.messages import EventDone, RequestMode  # noqa: E402
from aegis_actors.settings import load_settings  # noqa: E402
from aegis_actors.watchdog.actor import Watchdog  # noqa: E402
from supervisors.clock import VirtualClock  # noqa: E402


class BareWatchdog(AegisActor):
    """Monitoring off: count finished events, accept mode requests, nothing else."""

    def on_EventDone(self, done: EventDone) -> None:
        self.metrics.events.labels(done.outcome.value).inc()

    def on_RequestMode(self, _req: RequestMode) -> dict[str, Any]:
        return {"ok": False}

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, EventDone | RequestMode):
            return super().on_receive(message)
        return None


def settle() -> None:
    quiet = 0
    while quiet < 2:
        busy = any(not r.actor_inbox.empty() for r in pykka.ActorRegistry.get_all())
        quiet = 0 if busy else quiet + 1
        time.sleep(0.0005)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(monitoring: bool, seconds: float, symbols: int) -> tuple[float, float]:
    tree.Watchdog = Watchdog if monitoring else BareWatchdog  # type: ignore[misc]
    d = tempfile.mkdtemp(prefix="aegis-bench-")
    port = free_port() if monitoring else 0
    syms = [f"S{i:03d}" for i in range(symbols)]
    settings = load_settings(
        None,
        run={"log_dir": d + "/logs", "log_level": "ERROR"},
        store={"sqlite_path": d + "/a.db"},
        dashboard={"port": port},
        feed={"symbols": syms, "tick_interval_s": 0.1},
    )
    clock = VirtualClock()
    app = Aegis(settings, clock=clock, stderr=False)
    rt = app.start()
    settle()
    stop = threading.Event()

    def poll() -> None:  # a browser tab and a Prometheus scraper, both busy
        while not stop.wait(0.5):
            for path in ("/api/status", "/metrics"):
                try:
                    requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
                except requests.RequestException:
                    pass

    poller = threading.Thread(target=poll, daemon=True)
    if monitoring:
        poller.start()
    t0 = time.perf_counter()
    end = clock.now() + seconds
    while clock.now() < end:
        clock.advance(0.1)
        settle()
    wall = time.perf_counter() - t0
    stop.set()
    events = sum(
        s.value for m in rt.metrics.events.collect() for s in m.samples if s.name.endswith("_total")
    )
    app.stop("bench")
    return events, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0, help="virtual seconds per run")
    ap.add_argument("--symbols", type=int, default=8)
    a = ap.parse_args()
    off_n, off_t = run(False, a.seconds, a.symbols)
    on_n, on_t = run(True, a.seconds, a.symbols)
    off, on = off_n / off_t, on_n / on_t
    print(
        f"monitoring off (bare watchdog, no dashboard): {off_n:.0f} events in {off_t:.2f}s "
        f"= {off:,.0f} events/s"
    )
    print(
        f"monitoring on (watchdog + dashboard polled 2/s): {on_n:.0f} events in {on_t:.2f}s "
        f"= {on:,.0f} events/s"
    )
    print(f"throughput with monitoring: {(on / off - 1) * 100:+.1f}% vs off")


if __name__ == "__main__":
    main()
