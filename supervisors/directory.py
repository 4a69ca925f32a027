"""Name -> current instance, so callers keep working while a child is replaced."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pykka
from pykka import ActorDeadError

from supervisors.messages import Batch

__all__ = ["Directory"]

log = logging.getLogger("supervisors")

RUNNING = "running"
RESTARTING = "restarting"
GONE = "gone"


@dataclass
class _Entry:
    path: str
    state: str = RESTARTING
    ref: pykka.ActorRef[Any] | None = None
    held: deque[Any] = field(default_factory=deque)
    # Per-name delivery lock: a tell puts into the inbox while holding it, and a dying
    # instance drains its inbox while holding it, so no tell lands after the drain.
    lock: threading.Lock = field(default_factory=threading.Lock)


class Directory:
    """Stable, thread-safe handles by name that survive restarts.

    Tells to a child that is restarting (or whose ref just died and whose supervisor has not
    decided yet) are held, bounded by `hold_limit`, and flushed in order to the next instance.
    Anything undeliverable is a dead letter: counted, logged once per name per 1 s burst.
    """

    def __init__(
        self,
        hold_limit: int = 10_000,
        on_dead_letter: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.hold_limit = hold_limit
        self.on_dead_letter = on_dead_letter
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._dead: dict[str, int] = {}
        self._burst: dict[str, tuple[float, int]] = {}
        self._topics: dict[str, tuple[str, ...]] = {}  # topic -> subscribers, in order

    # -- callers ---------------------------------------------------------------------------

    @property
    def delivery_lock(self) -> AbstractContextManager[Any]:
        """Held by a dying instance while it drains its inbox, so no tell slips in between."""
        return self._lock

    @property
    def dead_letters(self) -> dict[str, int]:
        """Per-name count of messages that could not be delivered (a copy)."""
        with self._lock:
            return dict(self._dead)

    def delivery_lock_for(self, name: str) -> AbstractContextManager[Any]:
        """Held by a dying instance of `name` while it drains its inbox."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                entry = self._entries[name] = _Entry(name)
            return entry.lock

    def tell(self, name: str, message: Any) -> bool:
        """Deliver or hold `message`; False means it became a dead letter."""
        # Fast path, no global lock: the child is running and nothing is held for it.
        entry = self._entries.get(name)
        if entry is not None and entry.state == RUNNING and not entry.held:
            ref = entry.ref
            if ref is not None:
                with entry.lock:
                    if entry.state == RUNNING and not entry.held and entry.ref is ref:
                        try:
                            ref.tell(message)
                            return True
                        except ActorDeadError:
                            pass  # fall through to the careful path
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.state == GONE:
                self._dead_letter(name, message)
                return False
            if entry.state == RUNNING and entry.ref is not None:
                self._flush(entry)  # keep order behind anything already held
                if not entry.held:
                    try:
                        with entry.lock:
                            entry.ref.tell(message)
                        return True
                    except ActorDeadError:
                        pass  # died; its supervisor will restart it or give up
            return self._hold(name, entry, message)

    def subscribe(self, topic: str, *names: str) -> None:
        """Declare (once, where the tree is built) who receives what is published on
        `topic`, in this order; senders name the topic, not the receivers."""
        with self._lock:
            subs = self._topics.get(topic, ())
            self._topics[topic] = subs + tuple(n for n in names if n not in subs)

    def subscribers(self, topic: str) -> tuple[str, ...]:
        return self._topics.get(topic, ())

    def publish(self, topic: str, message: Any) -> int:
        """Tell `message` to every subscriber of `topic`; returns how many it reached
        (the others are dead letters, counted like any tell)."""
        return sum(1 for name in self._topics.get(topic, ()) if self.tell(name, message))

    def ask(self, name: str, message: Any, timeout: float) -> Any:
        """Ask the live instance; LookupError if there is none, pykka.Timeout on timeout."""
        ref = self.get(name)
        if ref is None:
            raise LookupError(f"no live child named {name!r}")
        try:
            return ref.ask(message, timeout=timeout)
        except ActorDeadError as exc:
            raise LookupError(f"child {name!r} died before answering") from exc

    def get(self, name: str) -> pykka.ActorRef[Any] | None:
        """The current live ref, or None while restarting or gone."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.state != RUNNING or entry.ref is None:
                return None
            return entry.ref if entry.ref.is_alive() else None

    def parent(self, name: str) -> str | None:
        """The name of the supervisor `name` runs under (from its path), or None."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            return None
        parts = entry.path.split("/")
        return parts[-2] if len(parts) >= 2 else None

    def names(self) -> list[str]:
        """Names that are running or restarting (not gone for good)."""
        with self._lock:
            return sorted(n for n, e in self._entries.items() if e.state != GONE)

    def state(self, name: str) -> str | None:
        """'running' | 'restarting' | 'gone', or None if never declared."""
        with self._lock:
            entry = self._entries.get(name)
            return None if entry is None else entry.state

    # -- supervisors -----------------------------------------------------------------------

    def declare(self, name: str, path: str) -> None:
        """Reserve `name` for `path` (held until registered); names are unique tree-wide."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                self._entries[name] = _Entry(path)
            elif entry.path != path and entry.state != GONE:
                raise ValueError(f"name {name!r} already used by {entry.path!r}")
            elif entry.state == GONE or entry.path != path:
                entry.path, entry.state, entry.ref = path, RESTARTING, None

    def register(self, name: str, path: str, ref: pykka.ActorRef[Any]) -> None:
        """Point `name` at a new instance and flush held messages to it, in order."""
        with self._lock:
            self.declare(name, path)
            entry = self._entries[name]
            entry.state, entry.ref = RUNNING, ref
            self._flush(entry)

    def mark_restarting(self, path: str) -> None:
        """Hold messages for `path` and everything below it until re-registered."""
        with self._lock:
            for entry in self._under(path):
                if entry.state != GONE:
                    entry.state, entry.ref = RESTARTING, None

    def mark_gone(self, path: str) -> None:
        """`path` and its subtree will not come back: held messages become dead letters."""
        with self._lock:
            for name, entry in list(self._entries.items()):
                if self._is_under(entry.path, path):
                    entry.state, entry.ref = GONE, None
                    while entry.held:
                        self._dead_letter(name, entry.held.popleft())

    def requeue(self, name: str, urn: str, messages: Iterable[Any]) -> None:
        """Put tells a dead instance never processed back in front of the held queue."""
        msgs = list(messages)
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.state == GONE:
                for m in msgs:
                    self._dead_letter(name, m)
                return
            if entry.state == RUNNING and entry.ref is not None and entry.ref.actor_urn != urn:
                for m in msgs:  # a successor is already live: late, but not lost
                    self.tell(name, m)
                return
            room = max(0, self.hold_limit - len(entry.held))
            for m in msgs[room:]:
                self._dead_letter(name, m)
            entry.held.extendleft(reversed(msgs[:room]))
            if entry.state == RUNNING:
                self._flush(entry)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _is_under(entry_path: str, path: str) -> bool:
        return entry_path == path or entry_path.startswith(path + "/")

    def _under(self, path: str) -> list[_Entry]:
        return [e for e in self._entries.values() if self._is_under(e.path, path)]

    def _hold(self, name: str, entry: _Entry, message: Any) -> bool:
        if len(entry.held) >= self.hold_limit:
            self._dead_letter(name, message)
            return False
        entry.held.append(message)
        return True

    def _flush(self, entry: _Entry) -> None:
        while entry.held and entry.ref is not None:
            try:
                with entry.lock:
                    entry.ref.tell(entry.held[0])
            except ActorDeadError:
                return  # the new instance died already; keep holding
            entry.held.popleft()

    def _dead_letter(self, name: str, message: Any) -> None:
        if type(message) is Batch:  # each message in it is one dead letter
            for one in message.messages:
                self._dead_letter(name, one)
            return
        self._dead[name] = self._dead.get(name, 0) + 1
        now = time.monotonic()
        last, since = self._burst.get(name, (-1e18, 0))
        since += 1
        if now - last >= 1.0:
            log.warning(
                "dead letters for %r: %d since last report (%d total), e.g. %r",
                name,
                since,
                self._dead[name],
                message,
            )
            last, since = now, 0
        self._burst[name] = (last, since)
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(name, message)
            except Exception:
                log.exception("on_dead_letter hook failed")
