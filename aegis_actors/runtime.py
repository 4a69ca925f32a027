"""What every actor of one running tree shares: settings, clock, names, cache, metrics.

It holds handles, not behaviour; actors still talk only through messages.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aegis_actors.cache import Cache, MemoryCache
from aegis_actors.messages import ReplyT, expect
from aegis_actors.metrics import Metrics

if TYPE_CHECKING:
    from aegis_actors.settings import Settings
    from supervisors import Clock, Directory


# Names of the tree's actors: one place, so a typo is an import error, not a dead letter.
STORE = "store"
WATCHDOG = "watchdog"
POSTURE = "posture"
EXECUTION = "execution"
ROLES = "roles"
ANALYST = "analyst"
VERIFIER = "verifier"
COMMANDER = "commander"
CONTEXT = "context"
GATEWAY = "gateway"
MARKET = "market"
CALENDAR = "calendar"
NEWS = "news"
ADMIN = "admin"
DASHBOARD = "dashboard"

# Topics: published once by their sender; who receives them is declared in tree.py.
TOPIC_MODE = "mode"  # ModeChange (watchdog)
TOPIC_DECISIONS = "decisions"  # DecisionRecord (commander)


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    directory: Directory
    cache: Cache = field(default_factory=MemoryCache)
    metrics: Metrics = field(default_factory=Metrics)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    shutdown: threading.Event = field(default_factory=threading.Event)  # set to end the run
    stopping: threading.Event = field(default_factory=threading.Event)  # no order leaves
    resume: bool = False  # `run --resume`: start normal even after an automatic shutdown
    ended_by: str = ""  # why the run ended in an automatic shutdown ("" = it did not)
    tree: Callable[[], dict[str, Any]] | None = None  # the supervisor snapshot, once started
    event_sinks: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    # A backtest's strategy backends by role name (analyst, verifier, commander); a role
    # not named here builds its backend from settings.
    role_backends: dict[str, Any] = field(default_factory=dict)
    # name -> [messages handled]: each actor counts its own; the watchdog reads it to tell
    # a busy actor (late heartbeat, progress made) from a hung one (no progress)
    progress: dict[str, list[int]] = field(default_factory=dict)
    # actor -> the actor it is blocked asking right now: an ask is bounded by its timeout,
    # so the asker is waiting, not hung (the watchdog judges the one asked instead)
    waiting_on: dict[str, str] = field(default_factory=dict)

    def ask(self, name: str, message: Any, timeout: float, reply: type[ReplyT]) -> ReplyT:
        """Ask a named actor, wait at most `timeout`, and check the answer is a `reply`
        (`WrongReply` if not): code outside the actors asks this way."""
        return expect(self.directory.ask(name, message, timeout), reply, name, message)

    def emit(self, type_: str, **data: Any) -> None:
        """An operator-facing event (mode, posture, alert, restart, tier step) to every sink.

        Sinks (the Redis `aegis:events` publisher, tests) must be quick and must not raise.
        """
        event = {"type": type_, "ts": self.clock.now(), **data}
        for sink in list(self.event_sinks):
            try:
                sink(event)
            except Exception:  # a broken sink never breaks the actor that emitted
                pass
