"""Secrets in tracebacks and channel errors; alert de-duplication and SPEC 6.2 routing.

Real parts: loguru writing to the real stderr (captured at the file descriptor), the JSON
log on disk, the alert courier delivering over real HTTP to a webhook receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alerts_receivers import Webhook, smtp_server
from conftest import drive, settle, wait_until

from aegis_actors.alerts import AlertDesk
from aegis_actors.alerts.channels import Delivery, HttpNotify, SmtpEmail
from aegis_actors.alerts.courier import Courier
from aegis_actors.logs import configure, flush, logger
from aegis_actors.messages import (
    Alert,
    AlertLevel,
    EventDone,
    Outcome,
    RequestMode,
    TradingMode,
)
from aegis_actors.redact import redact, redact_text
from aegis_actors.runtime import WATCHDOG
from aegis_actors.settings import AlertsSettings

TOKEN = "tok-SECRET-" + "7" * 12
PASSWORD = "pw-SECRET-" + "8" * 12


# -- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:hunter2@h/0", "redis://user:***@h/0"),
        (
            "postgresql://u:hunter2@h:5432/db?sslmode=off",
            "postgresql://u:***@h:5432/db?sslmode=off",
        ),
        ("host=h user=u password=hunter2 dbname=d", "host=h user=u password=*** dbname=d"),
        ("https://sms/x?token=hunter2&to=1", "https://sms/x?token=***&to=1"),
        ("redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15"),
        ("no url here", "no url here"),
    ],
)
def test_passwords_inside_urls_and_dsns_are_masked(shown: str, expected: str) -> None:
    assert redact_text(shown) == expected
    assert redact({"a": [shown]}) == {"a": [expected]}


# -- tracebacks: no local variables, secrets scrubbed ---------------------------------------


def test_a_traceback_on_stderr_shows_no_local_values_and_no_secret(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = configure(tmp_path / "logs", secrets=[TOKEN], stderr=True)
    try:

        def send(token: str, password: str) -> None:
            header = "Bearer " + token  # a local that loguru's `diagnose` would print
            raise UnicodeEncodeError("latin-1", header + password, 7, 8, "not latin-1")

        try:
            send(TOKEN, PASSWORD)
        except UnicodeEncodeError:
            logger.exception("delivery failed")
        flush()
    finally:
        logger.remove()
    err = capfd.readouterr().err
    assert "Traceback" in err and "delivery failed" in err  # the traceback is still there
    assert TOKEN not in err and "header =" not in err and "└" not in err
    assert TOKEN not in path.read_text()


# -- a channel error never escapes, never prints a secret -----------------------------------


def test_a_channel_raising_anything_is_a_failed_delivery_not_a_crash(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = configure(tmp_path / "logs", secrets=[], stderr=True)  # the secret is NOT known
    hook = Webhook()
    outcomes: list[tuple[str, str]] = []
    try:
        with smtp_server() as (port, _inbox):
            courier = Courier(
                {
                    # a non-ASCII token cannot go in an HTTP header: UnicodeEncodeError
                    "sms": HttpNotify("sms", hook.url + "/sms", 2.0, "tok✓" + TOKEN),
                    "email": SmtpEmail(
                        "127.0.0.1", port, "a@x", 2.0, user="u", password="p✓" + PASSWORD
                    ),
                },
                retries=1,
                backoff_s=0.01,
                on_outcome=lambda d, result, _n: outcomes.append((d.channel, result)),
            )
            for channel in ("sms", "email"):
                courier.submit(
                    Delivery(channel, "+1", "s", "critical: shutdown", "al-1", "critical")
                )
            wait_until(lambda: len(outcomes) == 2, what="both deliveries settled")
            courier.submit(Delivery("sms", "+1", "s", "still alive", "al-2", "critical"))
            wait_until(lambda: len(outcomes) == 3, what="the courier thread survived")
            courier.close()
        flush()
    finally:
        hook.close()
        logger.remove()
    assert sorted(outcomes) == [("email", "failed"), ("sms", "failed"), ("sms", "failed")]
    err = capfd.readouterr().err
    log = path.read_text()
    assert "NOT delivered" in log and "crashed" not in log and "Traceback" not in err
    for text in (err, log):
        assert TOKEN not in text and PASSWORD not in text


# -- de-duplication -------------------------------------------------------------------------


def desk(hook: Webhook, **cfg: Any) -> AlertDesk:
    return AlertDesk(
        AlertsSettings(
            slack_url=hook.url + "/slack",
            sms_url=hook.url + "/sms",
            phone_url=hook.url + "/phone",
            first=[{"name": "eng", "email": "", "phone": "+1001"}],
            retry_backoff_s=0.01,
            **cfg,
        )
    )


def alert(level: AlertLevel, kind: str, message: str, ts: float) -> Alert:
    return Alert(alert_id=f"al-{ts}", level=level, kind=kind, message=message, ts=ts)


@pytest.fixture
def hook() -> Iterator[Webhook]:
    w = Webhook()
    yield w
    w.close()


def test_only_the_same_kind_and_subject_is_deduplicated(hook: Webhook) -> None:
    d = desk(hook)
    try:
        a = alert(AlertLevel.WARNING, "latency_sla", "stage analysis over its SLA", 0.0)
        b = alert(AlertLevel.WARNING, "latency_sla", "stage verification over its SLA", 1.0)
        assert d.admit(a) == 0 and d.admit(b) == 0  # another subject: its own alert
        assert d.admit(alert(AlertLevel.WARNING, "latency_sla", a.message, 2.0)) is None
        assert d.admit(alert(AlertLevel.WARNING, "latency_sla", a.message, 3.0)) is None
        # the same condition, now critical: never held back by a milder repeat
        assert d.admit(alert(AlertLevel.CRITICAL, "latency_sla", a.message, 4.0)) == 2
        nxt = alert(AlertLevel.INFO, "posture_change", "posture -> defensive", 5.0)
        assert d.admit(nxt) == 0
        d.notify(nxt)
        wait_until(lambda: hook.of("/slack"), what="the next alert")
        assert hook.of("/slack")[0]["text"].endswith(
            "| 2 repeat alert(s) suppressed since the last one sent (latency_sla x2)"
        )
        # once told, not told again
        d.notify(alert(AlertLevel.INFO, "posture_change", "posture -> guerrilla", 6.0))
        wait_until(lambda: len(hook.of("/slack")) == 2)
        assert "suppressed" not in hook.of("/slack")[1]["text"]
    finally:
        d.close()


def test_a_mode_change_to_safe_halted_or_shutdown_is_never_suppressed(hook: Webhook) -> None:
    d = desk(hook)
    try:
        msg = "trading mode normal -> safe: feed silent"
        for ts in (0.0, 10.0, 20.0):
            assert d.admit(alert(AlertLevel.CRITICAL, "mode_change", msg, ts), always=True) == 0
    finally:
        d.close()


# -- SPEC 6.2: every row against what is actually sent ---------------------------------------

SPEC_6_2 = {  # level -> (channel, target, copies) sent to the 1st responder
    AlertLevel.INFO: {("slack", "#alerts", 1)},
    AlertLevel.WARNING: {("slack", "#urgent", 1), ("email", "eng@desk", 1)},
    AlertLevel.CRITICAL: {
        ("sms", "+1001", 1),
        ("phone", "+1001", 1),
        ("email", "eng@desk", 1),
        ("slack", "#urgent", 1),  # the Slack broadcast (alerts.slack_channels), beside SPEC's
    },
    AlertLevel.SEVERE: {("sms", "+1001", 3), ("phone", "+1001", 1), ("slack", "#urgent", 1)},
}


@pytest.mark.parametrize("level", list(AlertLevel))
def test_each_spec_6_2_row_reaches_exactly_its_channels(hook: Webhook, level: AlertLevel) -> None:
    with smtp_server() as (port, inbox):
        d = AlertDesk(
            AlertsSettings(
                slack_url=hook.url + "/slack",
                sms_url=hook.url + "/sms",
                phone_url=hook.url + "/phone",
                smtp_host="127.0.0.1",
                smtp_port=port,
                first=[{"name": "eng", "email": "eng@desk", "phone": "+1001"}],
            )
        )
        try:
            planned = d.notify(alert(level, "k", "m", 0.0))
            want = sum(n for _c, _t, n in SPEC_6_2[level])
            wait_until(lambda: d.courier.counts["sent"] == want, what=f"{want} deliveries")
        finally:
            d.close()
        sent: dict[tuple[str, str], int] = {}
        for p in hook.posts:
            key = (p["path"].strip("/"), p.get("channel") or p["to"])
            sent[key] = sent.get(key, 0) + 1
        for m in inbox:
            sent[("email", str(m["To"]))] = sent.get(("email", str(m["To"])), 0) + 1
        assert {(c, t, n) for (c, t), n in sent.items()} == SPEC_6_2[level]
        assert len(planned) == want


# -- in the tree: the watchdog's mode alerts and its failure streak -------------------------


def test_tree_delivers_every_safe_mode_change_and_the_limited_alert(
    aegis_factory: Any, vclock: Any, hook: Webhook
) -> None:
    with smtp_server() as (port, inbox):
        app = aegis_factory(
            alerts={
                "slack_url": hook.url + "/slack",
                "sms_url": hook.url + "/sms",
                "phone_url": hook.url + "/phone",
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "first": [{"name": "eng", "email": "eng@desk", "phone": "+1001"}],
            }
        )
        d = app.rt.directory

        def mode(target: TradingMode) -> None:
            answer = d.ask(WATCHDOG, RequestMode(target=target, reason="t", operator=True), 5)
            assert answer.ok, answer

        mode(TradingMode.LIMITED)  # warning: Slack #urgent + email (SPEC 6.2)
        wait_until(lambda: inbox and any("limited" in p["text"] for p in hook.of("/slack")))
        assert "-> limited" in str(inbox[0]["Subject"]) + inbox[0].get_payload()
        for _ in range(2):  # twice within the de-duplication window
            mode(TradingMode.SAFE)
            mode(TradingMode.NORMAL)
            drive(vclock, 1.0)
        wait_until(lambda: len([p for p in hook.of("/sms") if "-> safe" in p["text"]]) == 2)
        wait_until(lambda: len([p for p in hook.of("/phone") if "-> safe" in p["text"]]) == 2)


def test_roles_max_consecutive_failures_is_honoured(aegis_factory: Any, vclock: Any) -> None:
    app = aegis_factory(roles={"max_consecutive_failures": 2})
    d = app.rt.directory

    def fail(n: int) -> None:
        now = vclock.now()
        d.tell(
            WATCHDOG,
            EventDone(
                event_id=f"ev-{n}", symbol="AAPL", outcome=Outcome.FAILED, stamps={"t0": now}
            ),
        )

    fail(1)
    fail(2)
    settle()
    alerts = wait_until(
        lambda: [
            a
            for a in d.ask(WATCHDOG, _status(), 5)["alerts"]
            if a["kind"] == "consecutive_failures"
        ],
        what="the streak alert after 2 failures",
    )
    assert alerts[0]["message"].startswith("2 consecutive system errors")


def _status() -> Any:
    from aegis_actors.messages import GetStatus

    return GetStatus()


def test_settings_json_round_trip_of_alerts_is_redacted() -> None:
    cfg = AlertsSettings(slack_url="https://hooks/x/" + TOKEN, sms_url="https://u:pw@sms/x")
    shown = json.dumps(redact(cfg.model_dump(mode="json")))
    assert TOKEN not in shown and ":pw@" not in shown


def test_an_alert_text_carrying_a_dsn_is_delivered_without_its_password(hook: Webhook) -> None:
    d = desk(hook)
    try:
        msg = f"store: cannot connect to postgresql://aegis:{PASSWORD}@db:5432/aegis"
        d.notify(alert(AlertLevel.INFO, "store_down", msg, 0.0))
        wait_until(lambda: hook.of("/slack"), what="the Slack post")
    finally:
        d.close()
    text = hook.of("/slack")[0]["text"]
    assert PASSWORD not in text and "postgresql://aegis:***@db:5432/aegis" in text
