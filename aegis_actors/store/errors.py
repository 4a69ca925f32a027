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
