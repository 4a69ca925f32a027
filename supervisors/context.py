"""What a child gets from its supervisor: identity, shared services, a way to report its death."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from supervisors.messages import ChildExited

if TYPE_CHECKING:
    from supervisors.clock import Clock
    from supervisors.directory import Directory

__all__ = ["ChildContext", "EventSink"]

log = logging.getLogger("supervisors")

EventSink = Callable[[dict[str, Any]], None]


class ChildContext:
    """One per started instance; a restart gets a fresh context with a new `incarnation`.

    The incarnation lets the supervisor ignore late reports from instances it already replaced.
    """

    def __init__(
        self,
        name: str,
        path: str,
        directory: Directory,
        clock: Clock,
        *,
        on_exit: Callable[[ChildExited], None] | None = None,
        incarnation: int = 0,
        events: EventSink | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.directory = directory
        self.clock = clock
        self.incarnation = incarnation
        self.events = events  # inherited event sink for nested supervisors
        self._on_exit = on_exit
        self._reported = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChildContext({self.path!r}, incarnation={self.incarnation})"

    def report_exit(self, reason: BaseException | None, *, urn: str | None = None) -> None:
        """Tell the parent this instance ended (None = normal). Only the first call counts."""
        with self._lock:
            if self._reported:
                return
            self._reported = True
        if self._on_exit is None:
            return
        try:
            self._on_exit(ChildExited(self.name, self.incarnation, urn, reason))
        except ActorDeadError:
            log.debug("parent of %s is gone; exit report dropped", self.path)
        except Exception:  # the reporting thread must survive a broken parent hook
            log.exception("exit report of %s failed", self.path)

    def return_unprocessed(self, urn: str, messages: list[Any]) -> None:
        """Hand tells left in a dead instance's inbox back to the directory for redelivery."""
        self.directory.requeue(self.name, urn, messages)
