"""Starting and owning a whole supervision tree from ordinary (non-actor) code."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from supervisors.clock import Clock
from supervisors.context import ChildContext
from supervisors.directory import Directory
from supervisors.messages import ChildExited, GetSnapshot
from supervisors.spec import ChildSpec, Policy, Restart
from supervisors.supervisor import Supervisor, SupervisorExhausted

__all__ = ["RootHandle", "start_tree", "supervisor_spec"]

log = logging.getLogger("supervisors")


class RootHandle:
    """The root supervisor's parent: it learns how the tree ended and cleans up the names."""

    ref: pykka.ActorRef[Supervisor]

    def __init__(self, name: str, directory: Directory) -> None:
        self.name = name
        self.directory = directory
        self.exhausted = False
        self.exit_reason: BaseException | None = None
        self._done = threading.Event()

    def _on_exit(self, msg: ChildExited) -> None:
        self.exit_reason = msg.reason
        if isinstance(msg.reason, SupervisorExhausted):
            self.exhausted = True
        self.directory.mark_gone(self.name)  # nothing will restart the root
        self._done.set()

    def snapshot(self, timeout: float = 5.0) -> dict[str, Any]:
        """Recursive state; a stopped root gives a childless summary instead of raising."""
        try:
            result: dict[str, Any] = self.ref.ask(GetSnapshot(timeout), block=True, timeout=timeout)
            return result
        except pykka.ActorDeadError:
            return {
                "name": self.name,
                "path": self.name,
                "kind": "supervisor",
                "state": "exhausted" if self.exhausted else "stopped",
                "children": [],
            }

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the whole tree, children in reverse start order, and wait for the root."""
        deadline = time.monotonic() + timeout
        try:
            self.ref.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            log.error("tree %s did not stop within %.1fs", self.name, timeout)
            return
        self._done.wait(max(0.0, deadline - time.monotonic()))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the root has stopped (normally or exhausted); True if it has."""
        return self._done.wait(timeout)


def start_tree(
    name: str,
    children: list[ChildSpec],
    policy: Policy,
    *,
    clock: Clock,
    directory: Directory | None = None,
    on_exhausted: Callable[[str], None] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    rng: random.Random | None = None,
    ready_timeout: float = 10.0,
) -> RootHandle:
    """Start a root supervisor; returns once every child has had its first start attempt."""
    directory = directory if directory is not None else Directory()
    handle = RootHandle(name, directory)

    def exhausted(path: str) -> None:
        handle.exhausted = True
        if on_exhausted is not None:
            on_exhausted(path)

    ctx = ChildContext(name, name, directory, clock, on_exit=handle._on_exit)
    directory.declare(name, name)
    handle.ref = Supervisor.start(
        ctx, children=children, policy=policy, on_exhausted=exhausted, on_event=on_event, rng=rng
    )
    directory.register(name, name, handle.ref)
    try:  # the snapshot recurses, so it is answered only after every nested on_start ran
        handle.snapshot(timeout=ready_timeout)
    except pykka.Timeout:
        log.warning("tree %s not ready within %.1fs", name, ready_timeout)
    return handle


def supervisor_spec(
    name: str,
    children: list[ChildSpec],
    policy: Policy,
    *,
    on_exhausted: Callable[[str], None] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    restart: Restart = Restart.PERMANENT,
    shutdown_timeout_s: float = 30.0,
    rng: random.Random | None = None,
) -> ChildSpec:
    """A ChildSpec whose child is a nested Supervisor (events default to the parent's sink)."""

    def factory(ctx: ChildContext) -> pykka.ActorRef[Any]:
        return Supervisor.start(
            ctx,
            children=children,
            policy=policy,
            on_exhausted=on_exhausted,
            on_event=on_event,
            rng=rng,
        )

    return ChildSpec(name, factory, restart=restart, shutdown_timeout_s=shutdown_timeout_s)
