"""`status` and `tree` come from the admin's snapshot: a change made anywhere in the tree
(not through the admin) shows in the next answers at once, without waiting for the
periodic rebuild. Real Redis; the tree in-process on the virtual clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from conftest import wait_until

from aegis_actors.admin.client import AdminLink
from aegis_actors.admin.protocol import request
from aegis_actors.app import Aegis
from aegis_actors.messages import Posture, RequestMode, SetPosture, TradingMode
from aegis_actors.runtime import POSTURE, WATCHDOG
from supervisors.clock import VirtualClock

pytestmark = pytest.mark.integration

Ask = Callable[..., dict[str, Any]]
REDIS_URL = os.environ.get("AEGIS_TEST_REDIS", "redis://127.0.0.1:6379/15")
SECRET = "snapshot-test-" + uuid.uuid4().hex


@pytest.fixture
def admin(
    aegis_factory: Callable[..., Aegis],
    monkeypatch: pytest.MonkeyPatch,
    vclock: VirtualClock,
    redis_prefix: tuple[str, str],
) -> Iterator[tuple[Aegis, Ask]]:
    monkeypatch.setenv("AEGIS_ADMIN_SECRET", SECRET)
    channel = f"aegis-test-{uuid.uuid4().hex[:10]}:admin"
    app = aegis_factory(
        store={"redis_url": REDIS_URL, "redis_prefix": redis_prefix[1]},
        # an hour between periodic rebuilds: only the events can explain a fresh answer
        admin={"channel": channel, "events_channel": channel + ":events", "snapshot_every_s": 3600},
    )
    client = redis.Redis.from_url(REDIS_URL)
    wait_until(lambda: dict(client.pubsub_numsub(channel)).get(channel.encode()), what="admin")
    link = AdminLink(client, channel)

    def ask(cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = link.send(request(SECRET, cmd, args, vclock.now()), 10.0)  # the tree's clock
        assert reply is not None and reply["ok"] is True, reply
        result: dict[str, Any] = reply["result"]
        return result

    yield app, ask
    link.close()
    client.close()


def test_status_follows_a_mode_and_posture_change_made_elsewhere(
    admin: tuple[Aegis, Ask], vclock: VirtualClock
) -> None:
    app, ask = admin
    assert app.rt is not None
    first = ask("status")
    assert first["summary"]["mode"] == "normal" and first["summary"]["admin"] == "running"
    built_at = first["snapshot_ts"]

    app.rt.directory.ask(
        WATCHDOG, RequestMode(target=TradingMode.LIMITED, reason="test: API down"), 5.0
    )
    st = wait_until(
        lambda: (s := ask("status"))["summary"]["mode"] == "limited" and s,
        timeout=5.0,
        what="status showing the new mode",
    )
    assert st["watchdog"]["mode"] == "limited"

    app.rt.directory.ask(
        POSTURE, SetPosture(posture=Posture.DEFENSIVE, reason="test", operator=True), 5.0
    )
    st = wait_until(
        lambda: (s := ask("status"))["posture"]["posture"] == "defensive" and s,
        timeout=5.0,
        what="status showing the new posture",
    )
    assert st["summary"]["posture"] == "defensive"
    assert st["snapshot_ts"] >= built_at
    assert ask("tree")["name"] == "root"


def test_default_status_is_what_an_operator_checks_and_full_has_the_rest(
    admin: tuple[Aegis, Ask],
) -> None:
    _app, ask = admin
    st = ask("status")
    assert st["full"] is False
    assert {"mode", "posture", "equity", "pnl", "positions", "open_orders"} <= set(st["summary"])
    assert st["watchdog"]["mode"] == "normal" and st["posture"]["posture"] in set(Posture)
    assert isinstance(st["execution"]["positions"], dict) and "unrealised" in st["pnl"]
    sla = st["watchdog"]["sla"]["cycle"]  # the SLA lines the latencies are held against
    assert {"target_ms", "warning_ms", "critical_ms"} <= set(sla)
    assert isinstance(st["watchdog"]["latency"], dict) and "sla_breaches" in st["watchdog"]
    assert isinstance(st["store"]["up"], bool) and "refused" in st["admin"]
    assert "settings" not in st and "tree" not in st and "recent" not in st["feed"]
    full = ask("status", {"full": True})
    assert "full" not in full and full["settings"]["admin"]["channel"]
    assert full["tree"]["name"] == "root" and "recent" in full["feed"]
    assert full["summary"] == st["summary"] or full["snapshot_ts"] != st["snapshot_ts"]
