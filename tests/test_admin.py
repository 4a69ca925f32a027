"""The admin channel against a running AEGIS (a subprocess), over real Redis.

Each command is checked by its effect (read back through `status` or `tree`), not just
by its reply. One process serves the non-final commands; shutdown and the no-secret case
get their own.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_until
from loguru import logger

from aegis_actors.admin.protocol import reply_channel, request, sign

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("AEGIS_TEST_REDIS", "redis://127.0.0.1:6379/15")
SECRET = "test-secret-" + uuid.uuid4().hex


@dataclass
class Proc:
    """One `python -m aegis_actors` with its own admin and events channels."""

    popen: subprocess.Popen[bytes]
    env: dict[str, str]
    channel: str
    events_channel: str
    dir: Path
    settings_file: Path

    @property
    def log(self) -> str:
        path = self.dir / "logs" / "aegis.jsonl"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def cli(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`python -m aegis_actors admin ...` as an operator would run it."""
        return subprocess.run(
            [sys.executable, "-m", "aegis_actors", "admin", *argv],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def env_for(tmp: Path, *, secret: str | None = SECRET, **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env.update(
        AEGIS_REDIS_URL=REDIS_URL,
        AEGIS_ADMIN__CHANNEL=f"aegis-test-{tag}:admin",
        AEGIS_ADMIN__EVENTS_CHANNEL=f"aegis-test-{tag}:events",
        AEGIS_DASHBOARD__PORT="0",
        AEGIS_RUN__LOG_DIR=str(tmp / "logs"),
        AEGIS_STORE__SQLITE_PATH=str(tmp / "var" / "aegis.db"),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    if secret is not None:
        env["AEGIS_ADMIN_SECRET"] = secret
    return env


def start(tmp: Path, settings_toml: str = "", **env_kw: Any) -> Proc:
    """Start the tree and wait (bounded) until the admin listens on its channel."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = env_for(tmp, **env_kw)
    settings_file = tmp / "settings.toml"
    settings_file.write_text(settings_toml, encoding="utf-8")
    popen = subprocess.Popen(
        [sys.executable, "-m", "aegis_actors", "--settings", str(settings_file)],
        env=env,
        cwd=tmp,  # its var/ (paper book, spool) in the test's folder, not the checkout
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "stderr.txt").open("wb"),
    )
    proc = Proc(
        popen,
        env,
        env["AEGIS_ADMIN__CHANNEL"],
        env["AEGIS_ADMIN__EVENTS_CHANNEL"],
        tmp,
        settings_file,
    )
    client = redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + 30
    while True:
        listeners = dict(client.pubsub_numsub(proc.channel)).get(proc.channel.encode(), 0)
        if listeners:
            break
        if popen.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            raise AssertionError(
                f"admin never listened (exit {popen.poll()}): "
                + (tmp / "stderr.txt").read_text(errors="replace")[-2000:]
            )
        time.sleep(0.05)
    client.close()
    return proc


class Raw:
    """Publishes hand-made requests and waits for their replies (no CLI in between)."""

    def __init__(self, channel: str, secret: str = SECRET) -> None:
        self.channel, self.secret = channel, secret
        self.client = redis.Redis.from_url(REDIS_URL)

    def close(self) -> None:
        self.client.close()

    def make(self, cmd: str, args: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        req = request(self.secret, cmd, args, time.time())
        req.update(fields)
        return req

    def resign(self, req: dict[str, Any]) -> dict[str, Any]:
        req["sig"] = sign(self.secret, req["cmd"], req["args"], req["id"], req["ts"])
        return req

    def send(self, req: dict[str, Any] | str, id_: str | None = None, timeout: float = 10.0) -> Any:
        """Publish; return the parsed reply, or None if none came within `timeout`."""
        rid = id_ if id_ is not None else req["id"]  # type: ignore[index]
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(reply_channel(self.channel, rid))
        try:
            text = req if isinstance(req, str) else json.dumps(req)
            deadline = time.monotonic() + timeout
            while self.client.publish(self.channel, text) == 0:  # reconnecting: as the CLI does
                assert time.monotonic() < deadline, "nobody listens"
                time.sleep(0.05)
            while (left := deadline - time.monotonic()) > 0:
                m = pubsub.get_message(timeout=min(left, 0.5))
                if m is not None and m["type"] == "message":
                    return json.loads(m["data"])
            return None
        finally:
            pubsub.close()

    def ok(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        reply = self.send(self.make(cmd, args))
        assert reply is not None, f"no reply to {cmd}"
        assert reply["ok"], reply
        return reply["result"]


def node(tree: dict[str, Any], name: str) -> dict[str, Any]:
    if tree.get("name") == name:
        return tree
    for child in tree.get("children", []) or []:
        found = node(child, name)
        if found:
            return found
    return {}


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    p = start(tmp_path_factory.mktemp("aegis"), "[risk]\nmax_orders_per_minute = 200\n")
    yield p
    p.stop()


@pytest.fixture
def raw(proc: Proc) -> Iterator[Raw]:
    r = Raw(proc.channel)
    yield r
    r.close()


@pytest.fixture
def events(proc: Proc) -> Iterator[Any]:
    """A subscription to the events channel, opened before the command under test."""
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(proc.events_channel)
    yield pubsub
    pubsub.close()
    client.close()


def next_event(pubsub: Any, type_: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        m = pubsub.get_message(timeout=min(left, 0.5))
        if m is not None and m["type"] == "message":
            event = json.loads(m["data"])
            if event.get("type") == type_:
                return dict(event)
    raise AssertionError(f"no {type_} event within {timeout}s")


# -- commands and their effects ------------------------------------------------------------


def test_status_cli_prints_mode_posture_orders_and_stage_percentiles(proc: Proc) -> None:
    def ticked_and_done() -> bool:  # status is a snapshot (at most admin.snapshot_every_s old)
        result = json.loads(proc.cli("status", "--json").stdout)["result"]
        return bool(result["feed"]["ticks"] and result["watchdog"]["latency"]["cycle"]["count"])

    wait_until(ticked_and_done, timeout=30, what="ticks and a finished event in status")
    out = proc.cli("status")
    assert out.returncode == 0, out.stderr
    assert "mode normal" in out.stdout and "posture" in out.stdout
    assert "open orders" in out.stdout and "p99 ms" in out.stdout
    raw = proc.cli("status", "--json")
    reply = json.loads(raw.stdout)
    assert raw.returncode == 0 and reply["ok"] is True
    summary = reply["result"]["summary"]
    assert {"mode", "posture", "equity", "pnl", "positions", "open_orders", "feed_ticks"} <= set(
        summary
    )
    assert summary["admin"] == "running"
    cycle = reply["result"]["watchdog"]["latency"]["cycle"]
    assert {"p50_ms", "p95_ms", "p99_ms"} <= set(cycle)
    assert reply["result"]["feed"]["ticks"] > 0


def test_restart_analyst_leaves_a_new_actor_and_one_more_restart(raw: Raw, events: Any) -> None:
    before = node(raw.ok("tree"), "analyst")
    assert before["state"] == "running" and before["urn"]
    result = raw.ok("restart", {"actor": "analyst"})
    assert result == {"actor": "analyst", "supervisor": "roles"}
    after = node(raw.ok("tree"), "analyst")
    assert after["state"] == "running"
    assert after["urn"] != before["urn"]
    assert after["restarts"] == before["restarts"] + 1
    ev = next_event(events, "supervisor")
    assert ev["child"] == "analyst" and ev["reason"] == "operator" and ev["ts"] > 0


def test_admin_watch_prints_events_live(proc: Proc, raw: Raw) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "aegis_actors", "admin", "watch", "--count", "1", "--json"],
        env=proc.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (
                raw.client.pubsub_numsub(proc.events_channel)[0][1] >= 1
                or watcher.poll() is not None
            ),
            timeout=20,
            what="admin watch subscribed",
        )
        raw.ok("mode", {"set": "limited"})
        out, err = watcher.communicate(timeout=20)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        raw.ok("mode", {"set": "normal"})
    assert watcher.returncode == 0, err
    event = json.loads(out.splitlines()[0])
    assert event["type"] == "mode" and event["new"] == "limited" and event["ts"] > 0


def test_restart_of_unknown_or_self_is_refused(raw: Raw) -> None:
    reply = raw.send(raw.make("restart", {"actor": "nobody"}))
    assert reply["ok"] is False and "no actor named 'nobody'" in reply["error"]
    reply = raw.send(raw.make("restart", {"actor": "admin"}))
    assert reply["ok"] is False and "admin cannot restart itself" in reply["error"]


def test_posture_override_and_back_to_auto(raw: Raw, events: Any) -> None:
    assert raw.ok("posture", {"set": "offensive"})["override"] == "offensive"
    st = raw.ok("status")
    assert st["posture"]["posture"] == "offensive" and st["posture"]["override"] == "offensive"
    ev = next_event(events, "posture")
    assert ev["new"] == "offensive" and "admin command" in ev["reason"]
    assert raw.ok("posture", {"set": "auto"})["override"] == "auto"
    assert raw.ok("status")["posture"]["override"] == "auto"


def test_mode_safe_ends_with_no_open_order_and_operator_returns_to_normal(
    raw: Raw, events: Any
) -> None:
    assert raw.ok("mode", {"set": "safe"}) == {"mode": "safe"}
    ev = next_event(events, "mode")
    assert (ev["old"], ev["new"], ev["operator"]) == ("normal", "safe", True)

    def flat() -> bool:
        s = raw.ok("status")["summary"]
        return bool(s["mode"] == "safe" and s["open_orders"] == 0 and s["positions"] == 0)

    wait_until(flat, timeout=15, what="no open order and no position in safe mode")
    refused = raw.send(raw.make("mode", {"set": "safe"}))
    assert refused["ok"] is False and "already safe" in refused["error"]
    assert raw.ok("mode", {"set": "normal"}) == {"mode": "normal"}
    assert raw.ok("status")["summary"]["mode"] == "normal"


def test_ack_reaches_the_watchdog(raw: Raw, proc: Proc) -> None:
    raw.ok("posture", {"set": "defensive"})  # raises an info alert
    raw.ok("posture", {"set": "auto"})
    alerts = wait_until(lambda: raw.ok("status")["watchdog"]["alerts"], what="an alert")
    alert_id = alerts[-1]["alert_id"]
    out = proc.cli("ack", "--alert", alert_id)
    assert out.returncode == 0, out.stderr
    assert alert_id in out.stdout


def test_reload_applies_live_keys_and_refuses_the_rest_by_name(raw: Raw, proc: Proc) -> None:
    assert raw.ok("status", {"full": True})["settings"]["risk"]["max_orders_per_minute"] == 200
    proc.settings_file.write_text("[risk]\nmax_orders_per_minute = 150\n", encoding="utf-8")
    result = raw.ok("reload")
    assert result["changed"] == ["risk.max_orders_per_minute"]
    assert raw.ok("status", {"full": True})["settings"]["risk"]["max_orders_per_minute"] == 150

    proc.settings_file.write_text(
        "[risk]\nmax_orders_per_minute = 120\n[feed]\ntick_interval_s = 1.0\n", encoding="utf-8"
    )
    reply = raw.send(raw.make("reload"))
    assert reply["ok"] is False
    assert "feed.tick_interval_s" in reply["error"] and "nothing applied" in reply["error"]
    assert "risk.max_orders_per_minute" not in reply["error"]
    assert raw.ok("status", {"full": True})["settings"]["risk"]["max_orders_per_minute"] == 150

    proc.settings_file.write_text("[risk]\nmax_orders_per_minute = 0\n", encoding="utf-8")
    reply = raw.send(raw.make("reload"))
    assert reply["ok"] is False and "risk.max_orders_per_minute" in reply["error"]
    proc.settings_file.write_text("[risk]\nmax_orders_per_minute = 200\n", encoding="utf-8")
    assert raw.ok("reload")["changed"] == ["risk.max_orders_per_minute"]


# -- refusals ------------------------------------------------------------------------------


def test_each_bad_request_is_refused_with_its_own_error(raw: Raw, proc: Proc) -> None:
    before = raw.ok("status")["admin"]["refused"]
    bad_sig = raw.make("status")
    bad_sig["sig"] = sign("not-the-secret", "status", {}, bad_sig["id"], bad_sig["ts"])
    tampered = raw.make("mode", {"set": "limited"})
    tampered["args"] = {"set": "halted"}  # signed for limited
    stale = raw.resign(raw.make("status", ts=time.time() - 45))
    future = raw.resign(raw.make("status", ts=time.time() + 45))
    unknown = raw.resign(raw.make("sell-everything"))
    bad_args = raw.resign(raw.make("mode", {"set": "shutdown"}))
    no_args = raw.resign(raw.make("restart", {}))
    wrong_type = raw.make("status", ts="yesterday")
    cases = {
        "bad_sig": (bad_sig, "bad signature"),
        "tampered": (tampered, "bad signature"),
        "stale": (stale, "s off this process's clock (limit 30 s)"),
        "future": (future, "+45"),
        "unknown": (unknown, "unknown command 'sell-everything'"),
        "bad_args": (bad_args, "bad arguments for mode: 'set' must be one of"),
        "no_args": (no_args, "bad arguments for restart: 'actor' must be"),
        "wrong_type": (wrong_type, "malformed request: 'ts' must be a number"),
    }
    errors = {}
    for name, (req, expected) in cases.items():
        reply = raw.send(req)
        assert reply is not None, f"{name}: no reply"
        assert reply == {"id": req["id"], "ok": False, "error": reply["error"]}, name
        assert expected in reply["error"], (name, reply["error"])
        errors[name] = reply["error"]
    assert "-45" in errors["stale"]
    # the replay: a valid request, then the very same bytes again
    once = raw.make("status")
    assert raw.send(once)["ok"] is True
    replay = raw.send(once)
    assert replay["ok"] is False and "already used (replay refused)" in replay["error"]
    after = raw.ok("status")["admin"]["refused"]
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert grew == {
        "bad_signature": 2,
        "stale_ts": 2,
        "unknown_command": 1,
        "bad_args": 2,
        "bad_shape": 1,
        "replay": 1,
    } | {
        k: 0
        for k in after
        if k
        not in {"bad_signature", "stale_ts", "unknown_command", "bad_args", "bad_shape", "replay"}
    }

    # the JSON log is written by its own thread: the lines may follow the replies
    def refusals_logged() -> str:
        log = proc.log
        both = "admin refused (bad_signature)" in log and "admin refused (replay)" in log
        return log if both else ""

    log = wait_until(refusals_logged, what="the refusal lines in the log")
    assert SECRET not in log
    assert SECRET not in (proc.dir / "stderr.txt").read_text(errors="replace")


def test_cli_refusal_exits_1_and_no_listener_exits_2(proc: Proc) -> None:
    out = proc.cli("mode", "--set", "normal")
    assert out.returncode == 1 and "refused: mode normal refused: already normal" in out.stderr
    env = dict(proc.env, AEGIS_ADMIN__CHANNEL=f"aegis-test-{uuid.uuid4().hex[:8]}:nobody")
    gone = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "admin", "status", "--timeout", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert gone.returncode == 2
    assert "may not be running" in gone.stderr


def test_junk_flood_is_counted_and_a_valid_status_after_it_is_answered(
    raw: Raw, proc: Proc
) -> None:
    before = raw.ok("status")["admin"]["refused_total"]
    junk: list[bytes | str] = []
    for i in range(10_000):
        kind = i % 8
        if kind == 0:
            junk.append(b"\xff\xfe not json")
        elif kind == 1:
            junk.append("x" * (40_000 if i % 80 == 1 else 17_000))  # too large
        elif kind == 2:
            junk.append("[1, 2, 3]")
        elif kind == 3:
            junk.append(json.dumps({"id": 7, "cmd": "status"}))
        elif kind == 4:
            junk.append(
                json.dumps({"id": f"j{i}", "cmd": ["status"], "args": {}, "ts": 1, "sig": ""})
            )
        elif kind == 5:
            junk.append(
                json.dumps(
                    {"id": f"j{i}", "cmd": "status", "args": {}, "ts": time.time(), "sig": "0" * 64}
                )
            )
        elif kind == 6:
            junk.append("{" * 5000)  # deep nesting
        else:
            junk.append(
                json.dumps({"id": f"j{i}", "cmd": "status", "args": {}, "ts": True, "sig": "x"})
            )
    pipe = raw.client.pipeline(transaction=False)
    for j in junk:
        pipe.publish(raw.channel, j)
    pipe.execute()
    t0 = time.monotonic()
    status = raw.send(raw.make("status"), timeout=10.0)
    waited = time.monotonic() - t0
    assert status is not None and status["ok"] is True, f"status not answered ({waited:.1f}s)"
    assert status["result"]["admin"]["refused_total"] - before == 10_000
    assert proc.popen.poll() is None
    wait_until(  # the JSON log is written by its own thread
        lambda: "not logged one by one" in proc.log or "admin refused" in proc.log,
        what="the refusals in the log",
    )


# -- shutdown, no secret, no Redis -----------------------------------------------------------


def test_shutdown_stops_the_process_with_exit_0(tmp_path: Path) -> None:
    p = start(tmp_path)
    try:
        events = redis.Redis.from_url(REDIS_URL).pubsub(ignore_subscribe_messages=True)
        events.subscribe(p.events_channel)
        out = p.cli("shutdown")
        assert out.returncode == 0, out.stderr
        assert p.popen.wait(30) == 0
        assert "AEGIS stopped cleanly" in p.log
        assert next_event(events, "shutdown")["operator"] is True
        events.close()
    finally:
        p.stop()


def test_without_a_secret_admin_refuses_everything_and_says_why(tmp_path: Path) -> None:
    p = start(tmp_path, secret=None)
    try:
        # the JSON log is written by its own thread: the line may follow the subscription
        wait_until(lambda: "AEGIS_ADMIN_SECRET is not set" in p.log, what="the no-secret line")
        r = Raw(p.channel, secret="whatever")
        reply = r.send(r.make("status"))
        r.close()
        assert reply["ok"] is False and "admin disabled" in reply["error"]
        out = p.cli("status")
        assert out.returncode == 2 and "AEGIS_ADMIN_SECRET is not set" in out.stderr
        assert p.popen.poll() is None
    finally:
        p.stop()
    assert p.popen.returncode == 0


def test_without_redis_there_is_no_admin_and_status_says_so(aegis_env: Path, vclock: Any) -> None:
    from aegis_actors.app import Aegis
    from aegis_actors.runtime import ADMIN
    from aegis_actors.settings import load_settings
    from aegis_actors.status import collect_status

    settings = load_settings(
        None,
        dashboard={"port": 0},
        run={"log_dir": str(aegis_env / "logs")},
        store={"sqlite_path": str(aegis_env / "aegis.db")},
    )
    std = {n: logging.getLogger(n) for n in ("supervisors", "pykka")}
    saved = {n: (lg.handlers[:], lg.propagate, lg.level) for n, lg in std.items()}
    app = Aegis(settings, clock=vclock, stderr=False)
    rt = app.start()
    try:
        assert ADMIN not in rt.directory.names()
        assert "admin" not in [c["name"] for c in rt.tree()["children"]]
        assert collect_status(rt)["summary"]["admin"] == "absent (no Redis configured)"
    finally:
        assert app.stop("test over") == 0
        for n, lg in std.items():  # Aegis.start routed these into loguru; later tests use caplog
            lg.handlers[:], lg.propagate, lg.level = saved[n][0], saved[n][1], saved[n][2]
        logger.remove()
        logger.add(sys.stderr)


def test_admin_reconnects_after_redis_drops_its_connection(raw: Raw, proc: Proc) -> None:
    name = "aegis-admin-sub:" + proc.channel
    ids = [c["id"] for c in raw.client.client_list() if c.get("name") == name]
    assert len(ids) == 1
    raw.client.client_kill_filter(_id=ids[0])
    status = raw.send(raw.make("status"), timeout=10.0)
    assert status is not None and status["ok"] is True, status
    again = [c["id"] for c in raw.client.client_list() if c.get("name") == name]
    assert len(again) == 1 and again != ids
    wait_until(lambda: "admin: Redis error" in proc.log, what="the Redis error line")


def test_a_flood_big_enough_to_make_redis_drop_the_listener_is_survived(
    raw: Raw, proc: Proc
) -> None:
    """Redis cuts a subscriber that falls 32 MB behind; admin reconnects and answers."""
    pipe = raw.client.pipeline(transaction=False)
    for _ in range(1_500):
        pipe.publish(raw.channel, "y" * 60_000)
    pipe.execute()
    status = raw.send(raw.make("status"), timeout=10.0)
    assert status is not None and status["ok"] is True
    assert proc.popen.poll() is None


def test_a_replay_is_refused_even_by_a_freshly_started_process() -> None:
    """The id is also kept in Redis (for the ts window), so a restart forgets nothing."""
    from aegis_actors.admin.channel import Publisher
    from aegis_actors.admin.gate import Gate, RunState, run_state
    from aegis_actors.metrics import Metrics
    from supervisors import WallClock

    channel = f"aegis-test-{uuid.uuid4().hex[:8]}:admin"
    client = redis.Redis.from_url(REDIS_URL)
    req = json.dumps(request(SECRET, "status", {}, time.time()))

    def fresh_gate() -> tuple[Gate, list[Any], RunState]:
        delivered: list[Any] = []
        state = run_state(Metrics())  # a new process: empty memory of ids
        replies = Publisher(client, "test-replies")
        gate = Gate(
            channel=channel,
            secret=SECRET,
            clock=WallClock(),
            state=state,
            replies=replies,
            client=client,
            deliver=delivered.append,
        )
        return gate, delivered, state

    first, got, _ = fresh_gate()
    first(req)
    assert len(got) == 1
    second, got2, state2 = fresh_gate()
    second(req)
    assert got2 == [] and state2.refused == {"replay": 1}
    client.delete(f"{channel}:seen:{json.loads(req)['id']}")
    client.close()
