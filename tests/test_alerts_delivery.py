"""Alert delivery over real HTTP and real SMTP to servers the tests start on 127.0.0.1,
including a receiver that is down and one that hangs (no actor may wait on it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from alerts_receivers import Webhook, free_port, smtp_server
from conftest import wait_until

from aegis_actors.alerts import AlertDesk
from aegis_actors.messages import Alert, AlertLevel
from aegis_actors.settings import AlertsSettings

TIERS = {
    "first": [{"name": "eng", "email": "eng@desk", "phone": "+1001"}],
    "second": [{"name": "arch", "email": "arch@desk", "phone": "+1002"}],
}


def alert(level: AlertLevel, kind: str = "k", n: int = 0) -> Alert:
    return Alert(alert_id=f"al-{kind}-{n}", level=level, kind=kind, message="msg", ts=1000.0 + n)


@pytest.fixture
def hook() -> Iterator[Webhook]:
    w = Webhook()
    yield w
    w.close()


def desk(**cfg: Any) -> AlertDesk:
    return AlertDesk(AlertsSettings(**{"retry_backoff_s": 0.01, **TIERS, **cfg}))


def test_slack_webhook_gets_a_channel_per_level(hook: Webhook) -> None:
    d = desk(slack_url=hook.url + "/slack")
    try:
        d.notify(alert(AlertLevel.INFO, "posture_change"))
        d.notify(alert(AlertLevel.WARNING, "latency_sla"))
        wait_until(lambda: len(hook.of("/slack")) == 2)
        by_channel = {p["channel"]: p["text"] for p in hook.of("/slack")}
        assert "posture_change" in by_channel["#alerts"]
        assert "latency_sla" in by_channel["#urgent"]
        assert by_channel["#urgent"].startswith("[AEGIS WARNING]")
    finally:
        d.close()


def test_email_over_smtp_for_warnings_and_escalation(hook: Webhook) -> None:
    with smtp_server() as (port, inbox):
        d = desk(smtp_host="127.0.0.1", smtp_port=port)
        try:
            d.notify(alert(AlertLevel.WARNING, "position_loss"))
            wait_until(lambda: len(inbox) == 1)
            assert inbox[0]["To"] == "eng@desk"
            assert inbox[0]["Subject"] == "[AEGIS WARNING] position_loss"
            assert inbox[0]["X-Aegis-Alert"] == "al-position_loss-0"
            d.notify(alert(AlertLevel.WARNING, "position_loss"), step=1)
            wait_until(lambda: len(inbox) == 2)
            assert inbox[1]["To"] == "arch@desk"
            assert "escalated to 2nd" in inbox[1].get_payload()
        finally:
            d.close()


def test_critical_goes_to_sms_phone_and_email(hook: Webhook) -> None:
    with smtp_server() as (port, inbox):
        d = desk(
            smtp_host="127.0.0.1",
            smtp_port=port,
            sms_url=hook.url + "/sms",
            phone_url=hook.url + "/phone",
            webhook_token="tok-123",
        )
        try:
            d.notify(alert(AlertLevel.CRITICAL, "minute_loss"))
            wait_until(lambda: hook.of("/sms") and hook.of("/phone") and inbox)
            assert hook.of("/sms")[0]["to"] == "+1001"
            assert hook.of("/sms")[0]["auth"] == "Bearer tok-123"
            assert hook.of("/phone")[0]["kind"] == "phone"
        finally:
            d.close()


def test_receiver_down_retries_then_fails_without_blocking() -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    d = desk(sms_url=dead + "/sms", retries=2)
    try:
        t0 = time.monotonic()
        d.notify(alert(AlertLevel.CRITICAL, "store_down"))
        assert time.monotonic() - t0 < 0.1  # queued, not delivered inline
        wait_until(lambda: d.courier.counts["failed"] == 1)
        [rec] = list(d.courier.recent)
        assert rec["result"] == "failed" and rec["attempts"] == 3
    finally:
        d.close()


def test_a_failing_receiver_is_retried_until_it_accepts() -> None:
    flaky = Webhook(fail_first=2)
    d = desk(sms_url=flaky.url + "/sms", retries=3)
    try:
        d.notify(alert(AlertLevel.CRITICAL, "store_down"))
        wait_until(lambda: d.courier.counts["sent"] == 1)
        assert len(flaky.of("/sms")) == 1 and list(d.courier.recent)[0]["attempts"] == 3
    finally:
        d.close()
        flaky.close()


def test_a_hanging_receiver_never_blocks_the_caller() -> None:
    hold = threading.Event()
    slow = Webhook(hold=hold)
    d = desk(sms_url=slow.url + "/sms", timeout_s=5.0, queue_limit=2)
    try:
        t0 = time.monotonic()
        for n in range(5):  # at most one in flight and two queued: the rest dropped, counted
            d.notify(alert(AlertLevel.CRITICAL, "x", n))
        assert time.monotonic() - t0 < 0.2
        dropped = d.courier.counts["dropped"]
        assert dropped >= 2
        hold.set()
        wait_until(lambda: d.courier.counts["sent"] == 5 - dropped)
    finally:
        d.close()
        slow.close()


def test_the_watchdog_answers_while_deliveries_hang(aegis_factory: Any) -> None:
    """End to end: a whole tree whose SMS gateway hangs still answers status promptly."""
    from aegis_actors.messages import GetStatus
    from aegis_actors.runtime import WATCHDOG

    hold = threading.Event()
    slow = Webhook(hold=hold)
    try:
        app = aegis_factory(alerts={"sms_url": slow.url + "/sms", **TIERS})
        rt = app.rt
        rt.directory.tell(WATCHDOG, alert(AlertLevel.CRITICAL, "store_down"))
        t0 = time.monotonic()
        st = rt.directory.ask(WATCHDOG, GetStatus(), 2.0)
        assert time.monotonic() - t0 < 1.0
        assert any(a["kind"] == "store_down" for a in st["alerts"])
    finally:
        hold.set()
        slow.close()
