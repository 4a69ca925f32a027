"""The supervisor actor: starts children, restarts them per policy, escalates when it gives up.

All decisions run in the supervisor's own mailbox thread; the clock only ever *tells* it
(`DoRestart`), so backoff never blocks the mailbox.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka

from supervisors.actor import SupervisedActor
from supervisors.context import ChildContext, EventSink
from supervisors.intensity import Intensity
from supervisors.messages import ChildExited, DoRestart, Escalate, GetSnapshot
from supervisors.spec import ChildSpec, Policy, Restart, Strategy

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from supervisors.clock import Timer

__all__ = ["Supervisor", "SupervisorExhausted"]

log = logging.getLogger("supervisors")

_ids = itertools.count(1)  # incarnations and restart tokens, unique process-wide

RUNNING, RESTARTING, STOPPED, FAILED = "running", "restarting", "stopped", "failed"


class SupervisorExhausted(Exception):
    """Raised by a supervisor that gave up, so its parent sees an abnormal exit."""


def describe(reason: BaseException | None) -> str:
    """Human-readable exit reason; 'normal' for a clean stop."""
    return "normal" if reason is None else f"{type(reason).__name__}: {reason}"


@dataclass
class _Child:
    spec: ChildSpec
    path: str
    state: str = RESTARTING
    ref: pykka.ActorRef[Any] | None = None
    incarnation: int | None = None
    restarts: int = 0
    streak: int = 0
    started_at: float | None = None
    last_failure: dict[str, Any] | None = None
    token: int | None = None
    timer: Timer | None = None
    is_supervisor: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    def cancel_timer(self) -> None:
        self.token = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Supervisor(SupervisedActor):
    """Erlang/OTP-style supervisor over pykka actors.

    Children start in declared order and stop in reverse. A restart waits a backoff delay
    on the clock; more than `max_restarts` within `within_s` exhausts the supervisor, which
    stops its children, calls `on_exhausted(path)` and then fails so its parent decides.
    """

    def __init__(
        self,
        ctx: ChildContext,
        children: list[ChildSpec],
        policy: Policy,
        on_exhausted: Callable[[str], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(ctx)
        names = [c.name for c in children]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate child names under {ctx.path}: {names}")
        self.policy = policy
        self._on_exhausted = on_exhausted
        self._events: EventSink | None = on_event or ctx.events
        self._rng = rng or random.Random()
        self._intensity = Intensity(policy.max_restarts, policy.within_s)
        self._children = [_Child(spec, f"{ctx.path}/{spec.name}") for spec in children]
        self._by_name = {c.name: c for c in self._children}
        self._state = "starting"
        self._restarts = 0
        self._abandoned = 0
        self._last_failure: dict[str, Any] | None = None
        self._exhausted = False
        for child in self._children:  # hold early tells until each child is up
            ctx.directory.declare(child.name, child.path)

    # -- pykka hooks -----------------------------------------------------------------------

    def on_start(self) -> None:
        token = next(_ids)
        for child in self._children:
            child.token = token
        self._state = RUNNING
        try:
            self._start_group(token)
        except Exception:
            self._stop_children()
            raise

    def on_stop(self) -> None:
        if not self._exhausted:
            self._state = "stopping"
        self._stop_children()
        if not self._exhausted:
            self._state = STOPPED

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop_children()  # no orphans, whatever went wrong
        if not self._exhausted:
            self._state = FAILED

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, GetSnapshot):
            return self.snapshot(message.timeout)
        if isinstance(message, Escalate):
            raise SupervisorExhausted(message.reason)
        if self._exhausted:
            return None
        if isinstance(message, ChildExited):
            self._child_exited(message)
        elif isinstance(message, DoRestart):
            self._start_group(message.token)
        else:
            log.warning("%s: unexpected message %r", self.ctx.path, message)
        return None

    # -- public (call through ask / proxy) ------------------------------------------------

    def snapshot(self, timeout: float = 5.0) -> dict[str, Any]:
        """Recursive state of this subtree."""
        return {
            "name": self.ctx.name,
            "path": self.ctx.path,
            "kind": "supervisor",
            "state": self._state,
            "strategy": str(self.policy.strategy),
            "restarts": self._restarts,
            "abandoned": self._abandoned,
            "last_failure": self._last_failure,
            "children": [self._child_snapshot(c, timeout * 0.8) for c in self._children],
        }

    def restart_child(self, name: str) -> None:
        """Operator restart of one child; counted against intensity like any restart."""
        child = self._by_name[name]
        if self._exhausted or self._state != RUNNING:
            raise RuntimeError(f"{self.ctx.path} is {self._state}")
        now = self.ctx.clock.now()
        if not self._intensity.record(now):
            self._exhaust(child, "operator restart")
            return
        self._restarts += 1
        child.restarts += 1
        child.cancel_timer()
        self.ctx.directory.mark_restarting(child.path)
        self._stop_child(child)
        self._emit("supervisor.restart", child, "operator", delay_s=0.0)
        self._start_child(child)

    # -- starting --------------------------------------------------------------------------

    def _start_group(self, token: int) -> None:
        for child in self._children:
            if self._exhausted:
                return
            if child.token == token:  # re-checked: a failure mid-loop may regroup the rest
                self._start_child(child)

    def _start_child(self, child: _Child) -> None:
        child.cancel_timer()
        incarnation = next(_ids)
        ctx = ChildContext(
            child.name,
            child.path,
            self.ctx.directory,
            self.ctx.clock,
            on_exit=self._tell_self,
            incarnation=incarnation,
            events=self._events,
        )
        child.incarnation = incarnation
        child.started_at = self.ctx.clock.now()
        child.state = RUNNING
        try:
            ref = child.spec.factory(ctx)
        except Exception as exc:
            log.exception("%s: starting %s failed", self.ctx.path, child.name)
            self._on_exit(child, exc)
            return
        try:
            self.ctx.directory.register(child.name, child.path, ref)
        except ValueError as exc:  # name taken elsewhere meanwhile: do not orphan the instance
            with contextlib.suppress(Exception):
                ref.stop(block=True, timeout=child.spec.shutdown_timeout_s)
            self._on_exit(child, exc)
            return
        child.ref = ref
        child.is_supervisor = issubclass(ref.actor_class, Supervisor)
        self._emit("supervisor.child_started", child, "")

    # -- exits and restarts ----------------------------------------------------------------

    def _child_exited(self, msg: ChildExited) -> None:
        child = self._by_name.get(msg.name)
        if child is None or child.incarnation != msg.incarnation or child.state != RUNNING:
            return  # a report from an instance we already replaced or stopped ourselves
        self._on_exit(child, msg.reason)

    def _on_exit(self, child: _Child, reason: BaseException | None) -> None:
        now = self.ctx.clock.now()
        ran_for = now - child.started_at if child.started_at is not None else 0.0
        child.ref, child.incarnation = None, None
        text = describe(reason)
        self._emit("supervisor.child_exit", child, text)
        if reason is not None:
            failure = {"reason": text, "ts": now}
            child.last_failure = self._last_failure = failure
        spec = child.spec
        if spec.restart is Restart.TEMPORARY or (
            spec.restart is Restart.TRANSIENT and reason is None
        ):
            child.state = STOPPED if reason is None else FAILED
            self.ctx.directory.mark_gone(child.path)
            return
        if not self._intensity.record(now):
            self._exhaust(child, text)
            return
        # The streak (for backoff) resets once a child has stayed up for a whole window.
        child.streak = 1 if ran_for >= self.policy.within_s else child.streak + 1
        delay = self.policy.backoff.delay(child.streak, self._rng)
        self._restarts += 1
        self._schedule(child, delay, text)

    def _group(self, child: _Child) -> list[_Child]:
        strategy = self.policy.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            group = self._children
        elif strategy is Strategy.REST_FOR_ONE:
            group = self._children[self._children.index(child) :]
        else:
            group = [child]
        return [c for c in group if c is child or c.state in (RUNNING, RESTARTING)]

    def _schedule(self, cause: _Child, delay: float, reason: str) -> None:
        group = self._group(cause)
        directory = self.ctx.directory
        for c in group:  # hold tells before stopping anyone, so none reach a dying instance
            directory.mark_restarting(c.path)
        replaced = {id(cause)}
        for c in reversed(group):
            if c is not cause and c.ref is not None:
                self._stop_child(c)
                replaced.add(id(c))
        token = next(_ids)
        waiting: list[_Child] = []
        for c in group:
            c.cancel_timer()
            if c is not cause and c.spec.restart is Restart.TEMPORARY:
                c.state = STOPPED
                directory.mark_gone(c.path)
                continue
            if id(c) in replaced:  # siblings already waiting were counted when they went down
                c.restarts += 1
            c.state, c.token = RESTARTING, token
            waiting.append(c)
        log.warning("%s: restarting %s in %.3fs (%s)", self.ctx.path, cause.name, delay, reason)
        self._emit("supervisor.restart", cause, reason, delay_s=delay)
        if delay <= 0:
            self._tell_self(DoRestart(token))
            return
        timer = self.ctx.clock.call_later(delay, lambda: self._tell_self(DoRestart(token)))
        for c in waiting:
            c.timer = timer

    def _exhaust(self, child: _Child, reason: str) -> None:
        self._exhausted = True
        self._state = "exhausted"
        log.error("%s: restart intensity exceeded (%s); giving up", self.ctx.path, reason)
        self._emit("supervisor.escalation", child, reason)
        self._stop_children()
        if self._on_exhausted is not None:
            try:
                self._on_exhausted(self.ctx.path)
            except Exception:
                log.exception("%s: on_exhausted hook failed", self.ctx.path)
        self._tell_self(Escalate(f"{self.ctx.path}: {reason}"))

    # -- stopping --------------------------------------------------------------------------

    def _stop_children(self) -> None:
        for child in reversed(self._children):
            child.cancel_timer()
            self._stop_child(child)
            if child.state in (RUNNING, RESTARTING):
                child.state = STOPPED

    def _stop_child(self, child: _Child) -> None:
        ref, child.ref, child.incarnation = child.ref, None, None  # its exit report is now stale
        if ref is None:
            return
        try:
            ref.stop(block=True, timeout=child.spec.shutdown_timeout_s)
        except pykka.Timeout:
            self._abandoned += 1
            log.error("%s: %s ignored its shutdown timeout; abandoned", self.ctx.path, child.name)
            self._emit("supervisor.child_abandoned", child, "shutdown timeout")
        except Exception:
            log.exception("%s: stopping %s failed", self.ctx.path, child.name)

    # -- helpers ---------------------------------------------------------------------------

    def _tell_self(self, message: Any) -> None:
        with contextlib.suppress(pykka.ActorDeadError):  # we are gone: nothing to decide
            self.actor_ref.tell(message)

    def _emit(self, kind: str, child: _Child, reason: str, **extra: Any) -> None:
        if self._events is None:
            return
        event = {
            "type": kind,
            "supervisor": self.ctx.path,
            "child": child.name,
            "reason": reason,
            "restarts": child.restarts,
            "ts": self.ctx.clock.now(),
            **extra,
        }
        try:
            self._events(event)
        except Exception:
            log.exception("%s: on_event hook failed", self.ctx.path)

    def _child_snapshot(self, child: _Child, timeout: float) -> dict[str, Any]:
        base: dict[str, Any] = {
            "name": child.name,
            "path": child.path,
            "kind": "supervisor" if child.is_supervisor else "actor",
            "state": child.state,
            "restarts": child.restarts,
            "last_failure": child.last_failure,
        }
        if not child.is_supervisor:
            return base
        base["children"] = []
        if child.ref is not None and child.state == RUNNING:
            try:
                nested: dict[str, Any] = child.ref.ask(
                    GetSnapshot(timeout), block=True, timeout=timeout
                )
            except Exception:
                return base
            nested["restarted"] = child.restarts  # times *this* supervisor restarted it
            return nested
        return base
