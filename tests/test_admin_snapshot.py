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

REDIS_URL = os.environ.get("AEGIS_TEST_REDIS", "redis://127.0.0.1:6379/15")
SECRET = "snapshot-test-" + uuid.uuid4().hex


@pytest.fixture
def admin(
    aegis_factory: Callable[..., Aegis],
    monkeypatch: pytest.MonkeyPatch,
    vclock: VirtualClock,
    redis_prefix: tuple[str, str],
) -> Iterator[tuple[Aegis, Callable[[str], dict[str, Any]]]]:
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

    def ask(cmd: str) -> dict[str, Any]:
        reply = link.send(request(SECRET, cmd, {}, vclock.now()), 10.0)  # the tree's clock
        assert reply is not None and reply["ok"] is True, reply
        result: dict[str, Any] = reply["result"]
        return result

    yield app, ask
    link.close()
    client.close()


def test_status_follows_a_mode_and_posture_change_made_elsewhere(
    admin: tuple[Aegis, Callable[[str], dict[str, Any]]], vclock: VirtualClock
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
