"""One checklist item: a name, PASS/WARN/FAIL, and one line saying why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import requests

TIMEOUT_S = 5.0


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Item:
    name: str
    status: Status
    detail: str

    def line(self, width: int = 0) -> str:
        return f"{self.status.value}  {self.name:<{width}}  {self.detail}"


def one_line(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or no route"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
