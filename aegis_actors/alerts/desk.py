"""Who hears about an alert, and when: routing by level (SPEC 6.2), the escalation matrix
(SPEC 6.3) and de-duplication of flapping conditions.

The desk is plain code owned by the watchdog; it decides, the courier delivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aegis_actors.alerts.channels import Channel, Delivery, HttpNotify, SlackWebhook, SmtpEmail
from aegis_actors.alerts.courier import Courier, Outcome
from aegis_actors.messages import Alert, AlertLevel
from aegis_actors.redact import redact_text

if TYPE_CHECKING:
    from aegis_actors.settings import AlertsSettings, Contact

LEVELS = list(AlertLevel)
TIERS = ["1st responder", "2nd: system architect", "3rd: head of investment + CTO", "everyone"]
# SPEC 6.2: the personal channels each level reaches (Slack is the broadcast for all).
PERSONAL: dict[AlertLevel, tuple[str, ...]] = {
    AlertLevel.INFO: (),
    AlertLevel.WARNING: ("email",),
    AlertLevel.CRITICAL: ("sms", "phone", "email"),
    AlertLevel.SEVERE: ("sms", "phone"),
}


def channels_from(cfg: AlertsSettings) -> dict[str, Channel]:
    """The configured channels only; a channel with no URL or host is off."""
    out: dict[str, Channel] = {}
    slack = cfg.slack_url.get_secret_value()
    if slack:
        out["slack"] = SlackWebhook(slack, cfg.timeout_s)
    if cfg.smtp_host:
        out["email"] = SmtpEmail(
            cfg.smtp_host,
            cfg.smtp_port,
            cfg.smtp_from,
            cfg.timeout_s,
            starttls=cfg.smtp_starttls,
            user=cfg.smtp_user,
            password=cfg.smtp_password.get_secret_value(),
        )
    token = cfg.webhook_token.get_secret_value()
    if cfg.sms_url:
        out["sms"] = HttpNotify("sms", cfg.sms_url, cfg.timeout_s, token)
    if cfg.phone_url:
        out["phone"] = HttpNotify("phone", cfg.phone_url, cfg.timeout_s, token)
    return out


class AlertDesk:
    def __init__(self, cfg: AlertsSettings, on_outcome: Outcome | None = None) -> None:
        self.cfg = cfg
        self.courier = Courier(
            channels_from(cfg),
            retries=cfg.retries,
            backoff_s=cfg.retry_backoff_s,
            queue_limit=cfg.queue_limit,
            on_outcome=on_outcome,
        )
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # -> (ts, level rank)
        self._suppressed: dict[tuple[str, str], int] = {}
        self._unreported: dict[str, int] = {}  # by kind, told in the next delivered alert

    # -- de-duplication -------------------------------------------------------------------

    def admit(self, alert: Alert, always: bool = False) -> int | None:
        """None: the same condition (kind and subject, i.e. the message with its numbers
        masked) again inside the window at no higher level: count it, send nothing.
        Otherwise the number of repeats of this condition suppressed since it was last
        sent. `always` (a mode change to safe/halted/shutdown) is never suppressed."""
        key = (alert.kind, alert.message)
        rank = LEVELS.index(alert.level)
        last = self._last.get(key)
        if (
            not always
            and last is not None
            and alert.ts - last[0] < self.cfg.dedup_window_s
            and rank <= last[1]
        ):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            self._unreported[alert.kind] = self._unreported.get(alert.kind, 0) + 1
            return None
        self._last[key] = (alert.ts, rank)
        return self._suppressed.pop(key, 0)

    def take_unreported(self) -> str:
        """' | suppressed since the last alert: N (kind xN, ...)', once; '' when none."""
        if not self._unreported:
            return ""
        total = sum(self._unreported.values())
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(self._unreported.items()))
        self._unreported.clear()
        return f" | {total} repeat alert(s) suppressed since the last one sent ({kinds})"

    # -- escalation -----------------------------------------------------------------------

    def escalates(self, level: AlertLevel) -> bool:
        return LEVELS.index(level) >= LEVELS.index(AlertLevel(self.cfg.escalate_from))

    def next_delay(self, step: int) -> float | None:
        """Seconds from notifying `step` to the next step, None after the last."""
        after = self.cfg.escalation_after_s
        return after[step] if step < len(after) else None

    def contacts(self, step: int) -> list[Contact]:
        tiers = [self.cfg.first, self.cfg.second, self.cfg.third]
        if step < len(tiers):
            return list(tiers[step])
        seen: dict[tuple[str, str, str], Contact] = {}
        for tier in tiers:
            for c in tier:
                seen.setdefault((c.name, c.email, c.phone), c)
        return list(seen.values())

    # -- routing --------------------------------------------------------------------------

    def notify(self, alert: Alert, step: int = 0, repeats: int = 0) -> list[Delivery]:
        """Build and queue the deliveries for `alert` at escalation `step`; never blocks."""
        level = alert.level
        tier = TIERS[min(step, len(TIERS) - 1)]
        head = f"[AEGIS {level.value.upper()}] {alert.kind}"
        text = f"{head}: {redact_text(alert.message)}"  # an error text may carry a DSN
        if repeats:
            text += f" ({repeats} repeats suppressed)"
        if not step:
            text += self.take_unreported()
        if self.escalates(level):
            text += f' | ack: admin ack {{"alert": "{alert.alert_id}"}}'
        if step:
            text += f" | escalated to {tier} (step {step}, no ack)"
        out: list[Delivery] = []

        def add(channel: str, target: str, copies: int = 1) -> None:
            for n in range(1, copies + 1):
                out.append(Delivery(channel, target, head, text, alert.alert_id, level.value, n))

        channel_name = self.cfg.slack_channels.get(level.value)
        if channel_name:
            add("slack", channel_name)
        personal = PERSONAL[level] or (("email",) if step else ())
        for c in self.contacts(step) if personal else []:
            for ch in personal:
                target = c.email if ch == "email" else c.phone
                if not target:
                    continue
                sms_copies = self.cfg.severe_sms_repeat if level is AlertLevel.SEVERE else 1
                add(ch, target, sms_copies if ch == "sms" else 1)
        for d in out:
            self.courier.submit(d)
        return out

    def status(self) -> dict[str, object]:
        return {
            "channels": sorted(self.courier.channels),
            "deliveries": dict(self.courier.counts),
            "recent_deliveries": list(self.courier.recent)[-10:],
            "suppressed": {f"{k[0]}: {k[1]}": n for k, n in self._suppressed.items()},
        }

    def close(self) -> None:
        self.courier.close()
