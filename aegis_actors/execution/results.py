"""What happened to an order on its way to the broker, as types (not strings to parse).

`OrderDenied` names the check that stopped it (pre-trade risk, the data-mismatch gate,
the mode, the broker's own rejection); `OrderFailed` means it could not be sent (no
write-ahead, broker unreachable). `str()` gives the line an operator reads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placed:
    """Written ahead and accepted by the broker."""

    client_order_id: str

    def __str__(self) -> str:
        return "accepted"


@dataclass(frozen=True)
class Duplicate:
    """The ledger already holds this order (the same decision, replayed)."""

    client_order_id: str

    def __str__(self) -> str:
        return "duplicate"


@dataclass(frozen=True)
class Awaiting:
    """Held until the verifier confirms the symbol's price (SPEC 4.3)."""

    symbol: str

    def __str__(self) -> str:
        return "awaiting"


@dataclass(frozen=True)
class OrderDenied:
    check: str  # mode | size | max_positions | daily_loss | minute_loss | rate | mismatch ...
    reason: str

    def __str__(self) -> str:
        return f"refused:{self.check}: {self.reason}"


@dataclass(frozen=True)
class OrderFailed:
    reason: str

    def __str__(self) -> str:
        return f"error:{self.reason}"


Submitted = Placed | Duplicate | Awaiting | OrderDenied | OrderFailed


def in_flight(result: Submitted) -> bool:
    """True when the order is (or may be) working: an exit through it is in progress."""
    return isinstance(result, Placed | Duplicate | Awaiting)
