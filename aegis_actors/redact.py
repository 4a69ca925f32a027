"""Credential redaction: the one place that masks passwords inside URLs and DSNs.

Secrets proper (`SecretStr` settings) never leave as values; but a Redis URL or a
PostgreSQL DSN is an ordinary string that may carry a password (`redis://:pw@host`,
`postgresql://u:pw@h/db`, `host=h password=pw`). Everything that shows data to someone
(admin `status`, the dashboard and `/api/status`, log lines, `check`) passes it through
`redact` first.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@  (user may be empty, as in redis://:pw@host)
_URL_PW = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)([^@\s/]+)(@)")
# password=... in a key=value DSN or a query string (?password=..&, ;password=..)
_KV_PW = re.compile(
    r"(\b(?:password|passwd|pwd|token|secret|api_key|apikey)\s*=\s*)('[^']*'|[^\s&;,'\"]+)",
    re.IGNORECASE,
)
_HINTS = ("://", "=")


def redact_text(text: str) -> str:
    """`text` with every URL/DSN password replaced by `***` (cheap when there is none)."""
    if not any(h in text for h in _HINTS):
        return text
    text = _URL_PW.sub(rf"\g<1>{MASK}\g<3>", text)
    return _KV_PW.sub(rf"\g<1>{MASK}", text)


def redact(data: Any) -> Any:
    """A copy of JSON-like `data` with every string passed through `redact_text`."""
    if isinstance(data, str):
        return redact_text(data)
    if isinstance(data, dict):
        return {k: redact(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact(v) for v in data]
    return data


def url_passwords(text: str) -> list[str]:
    """The passwords inside `text` (so the log scrubber can mask them wherever they appear)."""
    found = [m.group(2) for m in _URL_PW.finditer(text)]
    found += [m.group(2).strip("'") for m in _KV_PW.finditer(text)]
    return [f for f in found if f and f != MASK]
