"""The admin channel: no credential on the reply channel (nor on the dashboard, `check` or
in the logs), full-match ids, a junk flood, and a subscriber that Redis drops.

A real `python -m aegis_actors` over real Redis and real PostgreSQL (trust auth accepts
any password, so a DSN can carry one to be hidden).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2.extensions
import pytest
import redis
from alerts_receivers import free_port
from conftest import wait_until
from test_admin import REDIS_URL, ROOT, Proc, Raw, start
from test_bad_input import SECRETS, leaked

from aegis_actors.admin.protocol import SeenIds, check, request, sign

pytestmark = pytest.mark.integration

PG_PASSWORD = "pg-SECRET-" + uuid.uuid4().hex[:10]
ADMIN_SECRET = SECRETS["AEGIS_ADMIN_SECRET"]


@pytest.fixture
def proc(tmp_path: Path, pg_dsn: str) -> Iterator[Proc]:
    dsn = psycopg2.extensions.make_dsn(pg_dsn, password=PG_PASSWORD)
    port = free_port()
    p = start(
        tmp_path,
        secret=ADMIN_SECRET,
        AEGIS_POSTGRES_DSN=dsn,
        AEGIS_DASHBOARD__PORT=str(port),
        **{k: v for k, v in SECRETS.items() if k != "AEGIS_ADMIN_SECRET"},
    )
    p.env["DASHBOARD_PORT"] = str(port)
    yield p
    p.stop()


def test_status_dashboard_check_and_logs_never_show_a_credential(proc: Proc) -> None:
    raw = Raw(proc.channel, ADMIN_SECRET)
    try:
        reply = raw.send(raw.make("status", {"full": True}))
    finally:
        raw.close()
    assert reply is not None and reply["ok"], reply
    on_channel = json.dumps(reply)
    dsn = reply["result"]["settings"]["store"]["postgres_dsn"]
    assert "password=***" in dsn  # shown, so an operator sees which server, but masked
    url = f"http://127.0.0.1:{proc.env['DASHBOARD_PORT']}/api/status"
    page = wait_until(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    check = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "check"],
        env=proc.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "durable store" in check.stdout and "postgres" in check.stdout, check.stdout
    proc.stop()
    stderr = (proc.dir / "stderr.txt").read_text(errors="replace")
    planted = {**SECRETS, "AEGIS_POSTGRES_DSN password": PG_PASSWORD}
    outputs = (on_channel, page, check.stdout, check.stderr, stderr)
    assert leaked(*outputs, root=proc.dir, values=planted) == []


# -- full-match ids -----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "sig"])
def test_a_trailing_newline_is_no_valid_id_or_signature(field: str) -> None:
    req = request("s", "status", {}, 1000.0)
    req[field] += "\n"
    if field == "id":
        req["sig"] = sign("s", "status", {}, req["id"], 1000.0)
    r = check(json.dumps(req), secret="s", now=1000.0, seen=SeenIds())
    assert r.reason == ("bad_id" if field == "id" else "bad_signature")  # type: ignore[union-attr]


# -- a subscriber dropped by Redis --------------------------------------------------------


def subscriber_ids(client: redis.Redis, channel: str) -> list[str]:
    name = f"aegis-admin-sub:{channel}"
    return [c["id"] for c in client.client_list() if c.get("name") == name]


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Proc]:
    p = start(tmp_path, secret=ADMIN_SECRET)
    yield p
    p.stop()


def test_dropped_subscriber_reconnects_logs_it_and_answers_the_next_command(
    plain: Proc,
) -> None:
    """What Redis does at the pub/sub output buffer limit: it closes the connection."""
    client = redis.Redis.from_url(REDIS_URL)
    raw = Raw(plain.channel, ADMIN_SECRET)
    try:
        (victim,) = subscriber_ids(client, plain.channel)
        assert client.client_kill_filter(_id=victim) == 1
        wait_until(
            lambda: "subscriber connection to Redis lost" in plain.log, what="the drop logged"
        )
        assert raw.ok("tree")["name"] == "root"  # the next valid command is answered
        wait_until(lambda: subscriber_ids(client, plain.channel) not in ([], [victim]))
    finally:
        raw.close()
        client.close()
    plain.stop()
    stderr = (plain.dir / "stderr.txt").read_text(errors="replace")
    assert "Traceback" not in stderr
    lost = [x for x in stderr.splitlines() if "subscriber connection to Redis lost" in x]
    assert len(lost) == 1 and "reconnecting in 0.1 s" in lost[0]


# -- a junk flood -------------------------------------------------------------------------

JUNK = [
    b"not json at all",
    json.dumps({"id": "j-same", "cmd": "status", "args": {}, "ts": 1, "sig": "0" * 64}).encode(),
    b"[1, 2, 3]",
    b"x" * 20_000,
]


def test_valid_commands_are_answered_during_a_junk_flood(plain: Proc) -> None:
    n = 200_000
    flooder = redis.Redis.from_url(REDIS_URL)
    raw = Raw(plain.channel, ADMIN_SECRET)
    before = raw.ok("status")["admin"]["refused_total"]
    done = threading.Event()

    def flood() -> None:
        for start_at in range(0, n, 5000):
            pipe = flooder.pipeline(transaction=False)
            for i in range(start_at, start_at + 5000):
                junk = JUNK[i % 4] if i % 8 else b"distinct junk %d" % i
                pipe.publish(plain.channel, junk)
            pipe.execute()
        done.set()

    t = threading.Thread(target=flood, daemon=True)
    t0 = time.monotonic()
    t.start()
    answered = sent = 0
    try:
        while not done.is_set() or sent < 3:
            sent += 1
            reply = raw.send(raw.make("tree"), timeout=10.0)
            answered += bool(reply and reply["ok"])
        took = time.monotonic() - t0
        t.join(30)
        dropped = "subscriber connection to Redis lost" in plain.log
        refused = (
            wait_until(
                lambda: (c := raw.ok("status")["admin"]["refused_total"] - before) >= n and c,
                timeout=30,
                what="every junk message refused",
            )
            if not dropped
            else None
        )
    finally:
        raw.close()
        flooder.close()
    assert answered == sent, f"{answered}/{sent} valid commands answered during the flood"
    if refused is not None:
        assert refused == n, f"refused {refused} of {n} in {took:.1f} s"


# -- reload: live for every reader, or refused ----------------------------------------------


def test_reload_refuses_a_key_its_readers_copied_at_start(plain: Proc) -> None:
    raw = Raw(plain.channel, ADMIN_SECRET)
    try:
        plain.settings_file.write_text("[risk]\nmismatch_halt_pct = 3.0\n", encoding="utf-8")
        reply = raw.send(raw.make("reload"))
        assert reply is not None and reply["ok"] is False
        assert reply["error"] == (
            "reload refused, nothing applied: cannot change while running: "
            "risk.mismatch_halt_pct (restart the process for these)"
        )
        assert raw.ok("status", {"full": True})["settings"]["risk"]["mismatch_halt_pct"] == 2.0
        plain.settings_file.write_text("[roles]\nmax_consecutive_failures = 5\n", encoding="utf-8")
        assert raw.ok("reload")["changed"] == ["roles.max_consecutive_failures"]
    finally:
        raw.close()
