"""`status` and `tree` kept ready as JSON text, so answering one costs a publish.

Gathering costs eleven asks (sent at once) and a walk of the tree; a thread of its own
does it every `every_s`, and at once when poked (the tree emitted an event: a mode or
posture change, a restart, an alert), so neither the admin actor nor the subscriber
ever waits on it. A command that changes something rebuilds it on the caller's thread
before its reply, so the next `status` shows the change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

log = logger.bind(actor="admin")


@dataclass(frozen=True)
class Texts:
    """One snapshot, each answer serialised once. The status texts lack their closing
    brace: each reply closes them with the admin's own live counts."""

    status: str = ""  # the default (brief) status
    full: str = ""  # `status {"full": true}`: every part in full, the settings, the tree
    tree: str = ""


Build = Callable[[], Texts]


class Snapshots:
    def __init__(self, build: Build, every_s: float) -> None:
        self.build, self.every_s = build, every_s
        self.texts = Texts()  # swapped whole: readers on any thread see one version
        self.builds = 0
        self._lock = threading.Lock()  # one build at a time
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aegis-admin-snapshot", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._poke.set()
        self._thread.join(timeout)

    def poke(self) -> None:
        """Something changed: rebuild soon (never blocks the caller)."""
        self._poke.set()

    def ready(self) -> bool:
        return bool(self.texts.status)

    def refresh(self) -> None:
        """Rebuild now, on the caller's thread."""
        with self._lock:
            self.texts = self.build()
            self.builds += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a failed build keeps the last snapshot; try again later
                log.exception("admin: building the status snapshot failed")
            self._poke.wait(self.every_s)
            self._poke.clear()
