"""The ways an alert leaves the process. Each `send` either delivers or raises DeliveryError.

Error texts never carry a URL (a Slack webhook URL is itself the credential) or a password:
every failure, whatever its type, becomes a DeliveryError naming only the exception type,
so a channel error can neither escape the courier nor print a secret.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import requests


class DeliveryError(Exception):
    """One attempt failed; the courier decides whether to retry."""


@dataclass(frozen=True)
class Delivery:
    channel: str  # slack | email | sms | phone
    target: str  # Slack channel, email address or phone number
    subject: str
    text: str
    alert_id: str
    level: str
    copy: int = 1  # severe SMS goes out several times; this is which one


class Channel(Protocol):
    name: str

    def send(self, d: Delivery) -> None: ...


def _post(url: str, body: dict[str, Any], timeout: float, token: str = "") -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = requests.post(url, json=body, timeout=timeout, headers=headers)
    except Exception as exc:  # RequestException, but also UnicodeEncodeError in a header
        raise DeliveryError(type(exc).__name__) from None
    if not 200 <= r.status_code < 300:
        raise DeliveryError(f"HTTP {r.status_code}")


class SlackWebhook:
    """A Slack-compatible incoming webhook: POST {"channel", "text"} as JSON."""

    name = "slack"

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url, timeout

    def send(self, d: Delivery) -> None:
        _post(self.url, {"channel": d.target, "text": d.text, "username": "aegis"}, self.timeout)


class HttpNotify:
    """SMS or phone through an HTTP gateway: POST {"kind", "to", "text", "alert_id", ...}."""

    def __init__(self, name: str, url: str, timeout: float, token: str = "") -> None:
        self.name, self.url, self.timeout, self.token = name, url, timeout, token

    def send(self, d: Delivery) -> None:
        body = {
            "kind": self.name,
            "to": d.target,
            "text": d.text,
            "alert_id": d.alert_id,
            "level": d.level,
            "copy": d.copy,
        }
        _post(self.url, body, self.timeout, self.token)


class SmtpEmail:
    """Plain SMTP (optionally STARTTLS and login) with the standard library's smtplib."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        timeout: float,
        *,
        starttls: bool = False,
        user: str = "",
        password: str = "",
    ) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self.starttls, self.user, self.password = starttls, user, password

    def send(self, d: Delivery) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = d.target
        msg["Subject"] = d.subject
        msg["X-Aegis-Alert"] = d.alert_id
        msg.set_content(d.text)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(msg)
        except Exception as exc:  # OSError, SMTPException, UnicodeEncodeError in login
            raise DeliveryError(type(exc).__name__) from None
