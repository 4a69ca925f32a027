"""The admin channel under a junk flood, beside the rate one Redis connection delivers.

    python scripts/bench_admin_flood.py [--n 1000000] [--valid-timeout 2]

Starts a private redis-server (default pub/sub output buffer limit, 32 MB hard / 8 MB for
60 s, so the shared one is left alone), then measures:

1. the baseline: how many messages a second one Redis connection delivers here, read by a
   raw hiredis consumer that does nothing else, while `redis-benchmark` publishes over one
   connection as fast as it can (pipelined);
2. with `python -m aegis_actors` subscribed to its admin channel, the same flood for each
   kind of junk, while a client sends valid signed `status` commands one after another:
   how many were answered during the flood, how many junk messages the admin refused,
   and whether Redis dropped the subscriber (and it reconnected).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import hiredis
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aegis_actors.admin.client import round_trip  # noqa: E402
from aegis_actors.admin.protocol import request  # noqa: E402

SIG0 = "0" * 64
JUNK = {
    "garbage text": "not json junk __rand_int__",
    "same bad-sig request": json.dumps(
        {"id": "j-1", "cmd": "status", "args": {}, "ts": 1, "sig": SIG0}
    ),
    "distinct bad-sig requests": json.dumps(
        {"id": "j-__rand_int__", "cmd": "status", "args": {}, "ts": 1, "sig": SIG0}
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flood(port: int, channel: str, payload: str, n: int) -> float:
    """Publish `n` messages over ONE connection, pipelined; returns the seconds it took."""
    t0 = time.perf_counter()
    subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "1", "-P", "1000", "-n", str(n)]
        + ["-r", "100000000", "-q", "publish", channel, payload],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - t0


def raw_delivery_rate(port: int, n: int) -> tuple[float, float]:
    """(published/s, delivered/s to a consumer that only parses and counts)."""
    channel = f"raw-{uuid.uuid4().hex[:6]}"
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"*2\r\n$9\r\nSUBSCRIBE\r\n${len(channel)}\r\n{channel}\r\n".encode())
    reader = hiredis.Reader()
    got: list[float] = []
    done = threading.Event()

    def consume() -> None:
        buf = bytearray(1 << 20)
        count, first = 0, 0.0
        sock.settimeout(5)
        while count < n:
            k = sock.recv_into(buf)
            if not k:
                break
            reader.feed(buf, 0, k)  # type: ignore[arg-type]
            while (m := reader.gets()) is not False:
                if m[0] == b"message":
                    if not count:
                        first = time.perf_counter()
                    count += 1
        got.extend([count, time.perf_counter() - first])
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.2)
    took = flood(port, channel, JUNK["garbage text"], n)
    done.wait(60)
    sock.close()
    return n / took, got[0] / got[1]


def admin_status(c: redis.Redis, channel: str, secret: str) -> dict[str, Any]:
    answer = round_trip(c, channel, request(secret, "status", {}, time.time()), 10.0)
    assert answer is not None and answer["ok"], answer
    return dict(answer["result"]["admin"])


def valid_during(
    url: str, channel: str, secret: str, stop: threading.Event, timeout: float
) -> dict[str, Any]:
    """Send signed `status` commands back to back until `stop`; count the answers."""
    out: dict[str, Any] = {"sent": 0, "answered": 0, "worst_s": 0.0}
    c = redis.Redis.from_url(url)

    def run() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            out["sent"] += 1
            answer = round_trip(c, channel, request(secret, "status", {}, time.time()), timeout)
            if answer is not None and answer.get("ok"):
                out["answered"] += 1
                out["worst_s"] = max(out["worst_s"], time.perf_counter() - t0)
            else:
                why = "no answer" if answer is None else str(answer.get("error"))[:60]
                out.setdefault("failed", {}).setdefault(why, 0)
                out["failed"][why] += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    out["thread"] = t
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000, help="junk messages per flood")
    ap.add_argument("--valid-timeout", type=float, default=2.0)
    ap.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout whose AEGIS runs (compare two)"
    )
    a = ap.parse_args()
    server = shutil.which("redis-server")
    if server is None or shutil.which("redis-benchmark") is None:
        raise SystemExit("needs redis-server and redis-benchmark on PATH")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory() as tmp:
        rs = subprocess.Popen(
            [server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        proc = None
        try:
            c = redis.Redis.from_url(url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    c.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            limit = c.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
            pub_rate, raw_rate = raw_delivery_rate(port, a.n)
            print(
                f"private redis-server :{port}, output buffer limits: {limit}; AEGIS from {a.root}"
            )
            print(
                f"baseline: one connection publishes {pub_rate:,.0f} msg/s; a raw hiredis "
                f"consumer receives {raw_rate:,.0f} msg/s (the rate one connection delivers)"
            )
            secret, tag = uuid.uuid4().hex, uuid.uuid4().hex[:8]
            channel = f"flood-{tag}:admin"
            env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
            env.update(
                AEGIS_REDIS_URL=url,
                AEGIS_ADMIN_SECRET=secret,
                AEGIS_ADMIN__CHANNEL=channel,
                AEGIS_ADMIN__EVENTS_CHANNEL=f"flood-{tag}:events",
                AEGIS_DASHBOARD__PORT="0",
                AEGIS_RUN__LOG_DIR=f"{tmp}/logs",
                AEGIS_STORE__SQLITE_PATH=f"{tmp}/aegis.db",
                AEGIS_STORE__SPOOL_PATH=f"{tmp}/spool.db",
            )
            env["PYTHONPATH"] = str(a.root)
            proc = subprocess.Popen(
                [sys.executable, "-m", "aegis_actors"],
                env=env,
                cwd=a.root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 60
            while c.pubsub_numsub(channel)[0][1] == 0:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("AEGIS did not start listening")
                time.sleep(0.05)
            admin_status(c, channel, secret)
            log = Path(tmp, "logs", "aegis.jsonl")
            print(
                f"\n{'junk (' + format(a.n, ',') + ' msgs, 1 conn)':<34} {'flood msg/s':>11} "
                f"{'refused':>9} {'drops':>5} {'valid answered':>15} {'worst':>7}"
            )
            for name, payload in JUNK.items():
                before = admin_status(c, channel, secret)["refused_total"]
                lost_before = log.read_text().count("subscriber connection to Redis lost")
                stop = threading.Event()
                valid = valid_during(url, channel, secret, stop, a.valid_timeout)
                took = flood(port, channel, payload, a.n)
                time.sleep(0.5)  # commands in flight as the flood ends
                stop.set()
                valid["thread"].join(a.valid_timeout + 5)
                time.sleep(1.0)
                refused = admin_status(c, channel, secret)["refused_total"] - before
                drops = log.read_text().count("subscriber connection to Redis lost") - lost_before
                print(
                    f"{name:<34} {a.n / took:>11,.0f} {refused:>9,} {drops:>5} "
                    f"{valid['answered']:>7}/{valid['sent']:<7} {valid['worst_s']:>6.2f}s"
                    + (f"  unanswered: {valid['failed']}" if valid.get("failed") else "")
                )
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(20)
            if os.environ.get("BENCH_KEEP_LOG"):
                shutil.copy(Path(tmp, "logs", "aegis.jsonl"), os.environ["BENCH_KEEP_LOG"])
            rs.terminate()
            rs.wait(10)


if __name__ == "__main__":
    main()
