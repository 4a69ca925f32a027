"""Supervisor-internal messages; never redelivered to a restarted instance."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Batch",
    "ChildExited",
    "DoRestart",
    "Escalate",
    "GetSnapshot",
    "SupervisorMessage",
]


class SupervisorMessage:
    """Marker base: these belong to one instance and are dropped, not requeued, at its death."""


@dataclass(frozen=True)
class ChildExited(SupervisorMessage):
    """A child instance ended; `reason` None means a normal stop."""

    name: str
    incarnation: int
    urn: str | None
    reason: BaseException | None


@dataclass(frozen=True)
class DoRestart(SupervisorMessage):
    """Backoff elapsed: start the children still waiting on this `token`."""

    token: int


@dataclass(frozen=True)
class Escalate(SupervisorMessage):
    """Sent to self after giving up, so the failure is raised from a tell handler."""

    reason: str


@dataclass(frozen=True)
class GetSnapshot(SupervisorMessage):
    """Ask for the recursive state tree."""

    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Batch:
    """Tells from one sender to one receiver, delivered in one mailbox turn, in order.

    Not a SupervisorMessage: a batch an instance did not get to is requeued like any
    tell. The receiver handles each message as if it had come alone (handlers never see
    a Batch), so batching is the transport's business only.
    """

    messages: tuple[object, ...]
