"""Admin round trip beside a raw redis-py publish/subscribe round trip, same run, same Redis.

    python scripts/bench_admin.py [--n 300] [--redis redis://127.0.0.1:6379/15] [--root DIR]

Starts `python -m aegis_actors` (synthetic feed, paper broker) with its own channels,
then measures: a raw pub/sub echo (a thread that publishes each message straight back),
the admin `status` (default and `--full`) and `tree` round trips as the `admin` command
line makes them (sign, subscribe to the reply channel, publish, wait, parse), and how
long a 10,000-message junk flood delays a `status` sent right behind it. The kept-link
figures are sampled in interleaved rounds (one raw echo, one status, one tree, ...), so
the load of a shared machine weighs on the baseline and the admin alike. `--root`: the
checkout whose AEGIS runs (to compare two).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aegis_actors.admin.client import AdminLink, round_trip  # noqa: E402
from aegis_actors.admin.protocol import request  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def line(name: str, xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return (
        f"{name:<36} n={len(ms):<5} p50 {pct(ms, 50):7.2f} ms   p99 {pct(ms, 99):7.2f} ms   "
        f"mean {statistics.fmean(ms):7.2f} ms"
    )


def raw_echo(url: str, n: int, fresh: bool = False, size: int = 0) -> list[float]:
    """The floor: one message there and one back over redis-py pub/sub (`fresh`: on a new
    subscriber connection each time, as a one-shot command line must)."""
    tag = uuid.uuid4().hex[:8]
    ping, pong = f"bench-{tag}:ping", f"bench-{tag}:pong"
    stop = threading.Event()
    ready = threading.Event()

    def echo() -> None:
        c = redis.Redis.from_url(url)
        ps = c.pubsub(ignore_subscribe_messages=True)
        ps.subscribe(ping)
        ready.set()
        while not stop.is_set():
            m = ps.get_message(timeout=0.2)
            if m is not None and m["type"] == "message":
                c.publish(pong, m["data"])
        ps.close()
        c.close()

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    ready.wait(5)
    c = redis.Redis.from_url(url)
    while c.pubsub_numsub(ping)[0][1] == 0:
        time.sleep(0.01)
    ps = c.pubsub(ignore_subscribe_messages=True)
    ps.subscribe(pong)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        if fresh:
            ps = c.pubsub(ignore_subscribe_messages=True)
            ps.subscribe(pong)
            ps.get_message(timeout=0.0)
        c.publish(ping, json.dumps({"i": i, "pad": "x" * size}) if size else str(i))
        while True:
            m = ps.get_message(timeout=5)
            if m is not None and m["type"] == "message":
                if size:
                    json.loads(m["data"])
                break
        if fresh:
            ps.close()
        out.append(time.perf_counter() - t0)
    stop.set()
    t.join(2)
    ps.close()
    c.close()
    return out


class Echo:
    """The raw floor, one round trip at a time: a thread publishes each ping straight back."""

    def __init__(self, url: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.ping, self.pong = f"bench-{tag}:ping", f"bench-{tag}:pong"
        self.stop = threading.Event()
        ready = threading.Event()

        def echo() -> None:
            c = redis.Redis.from_url(url)
            ps = c.pubsub(ignore_subscribe_messages=True)
            ps.subscribe(self.ping)
            ready.set()
            while not self.stop.is_set():
                m = ps.get_message(timeout=0.2)
                if m is not None and m["type"] == "message":
                    c.publish(self.pong, m["data"])
            ps.close()
            c.close()

        self.thread = threading.Thread(target=echo, daemon=True)
        self.thread.start()
        ready.wait(5)
        self.c = redis.Redis.from_url(url)
        while self.c.pubsub_numsub(self.ping)[0][1] == 0:
            time.sleep(0.01)
        self.ps = self.c.pubsub(ignore_subscribe_messages=True)
        self.ps.subscribe(self.pong)
        self.i = 0

    def once(self) -> float:
        self.i += 1
        t0 = time.perf_counter()
        self.c.publish(self.ping, str(self.i))
        while True:
            m = self.ps.get_message(timeout=5)
            if m is not None and m["type"] == "message":
                return time.perf_counter() - t0

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.ps.close()
        self.c.close()


def interleaved(
    url: str, channel: str, secret: str, n: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """n rounds of: raw echo, status, status --full, tree (kept links, as a tool would)."""
    echo = Echo(url)
    c = redis.Redis.from_url(url)
    link = AdminLink(c, channel)
    kinds: dict[str, dict[str, Any]] = {"status": {}, "status --full": {"full": True}, "tree": {}}
    probe = link.send(request(secret, "status", {"full": True}, time.time()), 10.0)
    if probe is None or not probe["ok"]:
        del kinds["status --full"]  # an older checkout (--root): no brief status yet
    out: dict[str, list[float]] = {"raw": [], **{k: [] for k in kinds}}
    sizes: dict[str, int] = {}
    for _ in range(n):
        out["raw"].append(echo.once())
        for kind, args in kinds.items():
            t0 = time.perf_counter()
            req = request(secret, kind.split()[0], args, time.time())
            answer = link.send(req, 10.0)
            out[kind].append(time.perf_counter() - t0)
            assert answer is not None and answer["ok"], answer
            sizes.setdefault(kind, len(json.dumps(answer["result"])))
    link.close()
    c.close()
    echo.close()
    return out, sizes


def admin_rtt(
    url: str, channel: str, secret: str, cmd: str, n: int, fresh: bool = False
) -> list[float]:
    """Signed request, reply awaited: on one kept link, or (`fresh`) as the CLI does it."""
    c = redis.Redis.from_url(url)
    link = AdminLink(c, channel)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        req = request(secret, cmd, {}, time.time())
        answer = round_trip(c, channel, req, 10.0) if fresh else link.send(req, 10.0)
        out.append(time.perf_counter() - t0)
        assert answer is not None and answer["ok"], answer
    link.close()
    c.close()
    return out


def admin_once(url: str, channel: str, secret: str, cmd: str) -> dict[str, Any]:
    c = redis.Redis.from_url(url)
    answer = round_trip(c, channel, request(secret, cmd, {}, time.time()), 10.0)
    c.close()
    assert answer is not None
    return answer


def ratio(name: str, xs: list[float], base: list[float]) -> str:
    return f"{line(name, xs)}   {pct(xs, 50) / pct(base, 50):5.1f}x raw at p50"


def flood_then_status(url: str, channel: str, secret: str) -> tuple[float, float]:
    c = redis.Redis.from_url(url)
    junk = [
        "not json",
        "[1]",
        json.dumps({"id": "j", "cmd": "status", "args": {}, "ts": time.time(), "sig": "0" * 64}),
        "x" * 20_000,
    ]
    t0 = time.perf_counter()
    pipe = c.pipeline(transaction=False)
    for i in range(10_000):
        pipe.publish(channel, junk[i % len(junk)])
    pipe.execute()
    sent = time.perf_counter() - t0
    t1 = time.perf_counter()
    answer = round_trip(c, channel, request(secret, "status", {}, time.time()), 10.0)
    assert answer is not None and answer["ok"], answer
    c.close()
    return sent, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument(
        "--redis", default=os.environ.get("AEGIS_TEST_REDIS", "redis://127.0.0.1:6379/15")
    )
    ap.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout whose AEGIS runs (compare two)"
    )
    a = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    secret = uuid.uuid4().hex
    channel = f"bench-{tag}:admin"
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
        env.update(
            AEGIS_REDIS_URL=a.redis,
            AEGIS_ADMIN_SECRET=secret,
            AEGIS_ADMIN__CHANNEL=channel,
            AEGIS_ADMIN__EVENTS_CHANNEL=f"bench-{tag}:events",
            AEGIS_DASHBOARD__PORT="0",
            AEGIS_RUN__LOG_DIR=f"{tmp}/logs",
            AEGIS_STORE__SQLITE_PATH=f"{tmp}/aegis.db",
            PYTHONPATH=str(a.root),
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "aegis_actors"],
            env=env,
            cwd=a.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            c = redis.Redis.from_url(a.redis)
            deadline = time.monotonic() + 30
            while c.pubsub_numsub(channel)[0][1] == 0:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("AEGIS did not start listening")
                time.sleep(0.05)
            c.close()
            admin_rtt(a.redis, channel, secret, "status", 10)  # warm up
            print(
                f"== admin: {a.n} interleaved rounds, Redis {a.redis}, AEGIS from {a.root} "
                "running (synthetic feed); status/tree answered from the admin's snapshot "
                "(goal <= 3x raw)"
            )
            got, sizes = interleaved(a.redis, channel, secret, a.n)
            raw = got["raw"]
            print(line("raw redis-py pub/sub echo", raw))
            for kind in (k for k in got if k != "raw"):
                name = f"admin {kind} ({sizes[kind] / 1000:.1f} kB)"
                print(ratio(name, got[kind], raw))
            status = got["status"]
            size = sizes["status"]
            same = raw_echo(a.redis, a.n, size=size)
            print(line(f"raw echo of a status-sized JSON ({size / 1000:.1f} kB)", same))
            print(
                f"{'':<36} status p50 is {pct(status, 50) / pct(same, 50):.1f}x the echo of the "
                "same bytes"
            )
            print("one-shot, a new subscriber connection per message (as the admin CLI does):")
            raw1 = raw_echo(a.redis, a.n, fresh=True)
            print(line("raw echo, fresh connection", raw1))
            st1 = admin_rtt(a.redis, channel, secret, "status", a.n, fresh=True)
            print(ratio("admin status, fresh connection", st1, raw1))
            sent, answered = flood_then_status(a.redis, channel, secret)
            print(
                f"10,000 junk messages published in {sent * 1000:.0f} ms; a status sent right "
                f"after was answered {answered * 1000:.0f} ms later"
            )
        finally:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    main()
