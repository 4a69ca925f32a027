"""Store exceptions, split so callers can tell "retry later" from "your data is wrong"."""

from __future__ import annotations


class StoreError(Exception):
    """Base class for every error raised by the durable store."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or a call failed for connection/disk reasons.

    Transient: the next call reconnects, so callers may buffer and retry.
    """


class StoreIntegrityError(StoreError):
    """A constraint rejected the write (duplicate unique key, NOT NULL, CHECK).

    Permanent for this row: retrying the same write will fail again.
    """


class LedgerConflict(StoreIntegrityError):
    """A row with this unique key is already in the ledger with different content.

    An identical replay is idempotent; a different row under the same key is a bug (two
    fills sharing an id, two orders sharing a client order id) and must never be dropped
    silently: the store logs it, counts it and raises an alert.
    """

    def __init__(self, table: str, key: str, value: str, differences: dict[str, tuple]) -> None:
        self.table, self.key, self.value, self.differences = table, key, value, differences
        diff = ", ".join(f"{c}: ledger {a!r} != new {b!r}" for c, (a, b) in differences.items())
        super().__init__(f"{table}.{key} {value!r} already recorded with other content ({diff})")
