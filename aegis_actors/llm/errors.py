"""One error type for every way an LLM call can go wrong, with what to do about it."""

from __future__ import annotations

# kinds worth another attempt (same endpoint after a wait, or the backup at once)
RETRYABLE = frozenset({"rate_limited", "server", "network", "timeout", "bad_response"})


class LlmError(Exception):
    """`kind`: rate_limited | server | network | timeout | bad_response | client."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s
        self.endpoint = endpoint

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __str__(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        code = f" HTTP {self.status}" if self.status else ""
        return f"{self.kind}{code}{where}: {self.args[0]}"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)
