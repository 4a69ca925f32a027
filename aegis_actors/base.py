"""The base of every AEGIS actor: typed dispatch, timers on the clock, status, logging.

Messages are dispatched to `on_<MessageClassName>` methods, so an actor's vocabulary
is visible in its class; each handler's message class is checked when the actor is
built (`check_handlers`). A handler that raises stops the actor and its supervisor
restarts it; expected bad input is handled inside the handler with one log line and a
metric, never by crashing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pykka
from loguru import logger

from aegis_actors.logs import tracing
from aegis_actors.messages import (
    Alert,
    AlertLevel,
    GetStatus,
    Heartbeat,
    HeartbeatAck,
    Msg,
    ReplyT,
)
from aegis_actors.runtime import WATCHDOG, Runtime
from supervisors import ChildContext, SupervisedActor, Timer

_CHECKED: set[type] = set()
_HOOKS = frozenset({"on_start", "on_stop", "on_failure", "on_receive"})


def check_handlers(cls: type) -> None:
    """Every `on_<Name>` handler must name a message class the actor can receive (one
    defined or imported in a module of its class hierarchy): a renamed message fails
    when the actor is built, not as an ignored message at run time."""
    if cls in _CHECKED:
        return
    known: dict[str, Any] = {}
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        if module is not None:
            known.update(vars(module))
    for attr in dir(cls):
        if not attr.startswith("on_") or attr in _HOOKS:
            continue
        target = known.get(attr[3:])
        if not isinstance(target, type):
            raise TypeError(f"{cls.__name__}.{attr}: no message class {attr[3:]!r} to handle")
    _CHECKED.add(cls)


class AegisActor(SupervisedActor):
    def __init__(self, ctx: ChildContext, rt: Runtime) -> None:
        check_handlers(type(self))
        super().__init__(ctx)
        self.rt = rt
        self.name = ctx.name
        self.clock = rt.clock
        self.settings = rt.settings
        self.metrics = rt.metrics
        self.log = logger.bind(actor=ctx.name)
        self._progress = rt.progress.setdefault(ctx.name, [0])
        self._timers: list[Timer] = []
        self._dispatch: dict[type, Callable[..., Any] | None] = {}  # message type -> handler
        self._prune_at = 256

    # -- messaging -------------------------------------------------------------------

    def send(self, name: str, message: Msg) -> bool:
        """Tell a named actor, batched per mailbox turn (`SupervisedActor.post`); a
        message that reaches nobody is counted, never silent."""
        return self.post(name, message)  # a dead letter is counted by the Directory's hook

    def fan_out(self, topic: str, message: Msg) -> None:
        """Tell every subscriber of `topic` (declared in tree.py); misses are counted."""
        for name in self.rt.directory.subscribers(topic):
            self.post(name, message)

    def alert(
        self, level: AlertLevel, kind: str, message: str, event_id: str | None = None
    ) -> None:
        """Raise an alert: the watchdog logs, records, delivers and escalates it."""
        self.send(WATCHDOG, Alert.new(level, kind, message, self.clock.now(), event_id))

    def trace(self, event_id: str | None, text: str, *args: Any) -> None:
        """A per-event DEBUG line: costs nothing unless a sink takes DEBUG (a trace run)."""
        if tracing():
            self.log.bind(event_id=event_id).debug(text, *args)

    def ask(self, name: str, message: Msg, timeout: float, reply: type[ReplyT]) -> ReplyT:
        """Ask another actor, wait at most `timeout`, and check the answer is a `reply`
        (`WrongReply` if not); meanwhile the watchdog sees this actor as waiting on
        `name`, not hung (a slow store must not get execution restarted)."""
        self.flush_outbox()  # what I told before asking reaches its receivers first
        waiting = self.rt.waiting_on
        waiting[self.name] = name
        try:
            return self.rt.ask(name, message, timeout, reply)
        finally:
            waiting.pop(self.name, None)

    def on_receive(self, message: Any) -> Any:
        self._progress[0] += 1  # liveness: a busy actor is not a hung one
        cls = type(message)
        try:
            handler = self._dispatch[cls]
        except KeyError:  # once per message type per instance
            handler = self._dispatch[cls] = getattr(type(self), f"on_{cls.__name__}", None)
        if handler is None:
            self.log.warning("ignored unexpected message {}", type(message).__name__)
            self.metrics.errors.labels("unexpected_message").inc()
            return None
        return handler(self, message)

    def progressed(self) -> None:
        """A long handler's unit of work done (liveness: busy, not hung)."""
        self._progress[0] += 1

    def on_GetStatus(self, _msg: GetStatus) -> dict[str, Any]:
        return self.status()

    def on_Heartbeat(self, msg: Heartbeat) -> HeartbeatAck:
        return HeartbeatAck(name=self.name, seq=msg.seq, ts=self.clock.now())

    def status(self) -> dict[str, Any]:
        return {}

    # -- timers ----------------------------------------------------------------------

    def after(self, delay_s: float, message: Any) -> Timer:
        """Tell myself `message` after `delay_s` on the clock (never sleeps in the mailbox)."""
        ref = self.actor_ref

        def fire() -> None:
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                pass  # I was stopped or restarted; my successor has its own timers

        timer = self.clock.call_later(delay_s, fire)
        self._timers.append(timer)
        if len(self._timers) > self._prune_at:  # amortised: drop fired and cancelled ones
            now = self.clock.now()
            self._timers = [t for t in self._timers if not t.cancelled and t.when > now]
            self._prune_at = max(256, 2 * len(self._timers))
        return timer

    def cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    def on_stop(self) -> None:
        self.cancel_timers()
        self.stopping()

    def on_failure(self, *_exc: object) -> None:
        self.cancel_timers()
        self.stopping()

    def stopping(self) -> None:
        """Release what the actor holds; runs on a clean stop and after a crash."""
