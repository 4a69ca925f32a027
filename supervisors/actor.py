"""Base class for children that report their own death to their supervisor by message."""

from __future__ import annotations

import logging
import queue
import sys
from typing import TYPE_CHECKING, Any

import pykka
from pykka import ActorDeadError, ThreadingFuture, messages

from supervisors import inline
from supervisors.messages import SupervisorMessage

if TYPE_CHECKING:
    from types import TracebackType

    from supervisors.context import ChildContext

__all__ = ["ChildBaseException", "SupervisedActor"]

log = logging.getLogger("supervisors")


class ChildBaseException(Exception):
    """A BaseException (SystemExit, ...) raised by a child, demoted so that pykka does not
    answer it with ActorRegistry.stop_all()."""


class SupervisedActor(pykka.ThreadingActor):
    """Reports normal stop, tell-handler failure, on_start and on_stop failure to its parent.

    Subclasses use on_start/on_stop/on_failure/on_receive normally; no super() calls needed.
    Tells still queued when the instance dies go back to the Directory, so a restarted
    instance receives them instead of pykka silently dropping them.
    """

    def __init__(self, ctx: ChildContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._exit_reason: BaseException | None = None

    # -- the runtime seam: a thread each (live), or the deterministic scheduler ----------

    @staticmethod
    def _create_actor_inbox() -> Any:
        sched = inline.current()
        return queue.Queue() if sched is None else sched.new_inbox()

    @staticmethod
    def _create_future() -> Any:
        return ThreadingFuture() if inline.current() is None else inline.InlineFuture()

    def _start_actor_loop(self) -> None:
        if isinstance(self.actor_inbox, inline.InlineInbox):
            self.actor_inbox.sched.start(self)
        else:
            super()._start_actor_loop()

    def _inline_exit(self) -> None:
        """The end of `_actor_loop` for the deterministic runtime: teardown, exit report."""
        try:
            self._actor_loop_teardown()
        finally:
            self.ctx.report_exit(self._exit_reason, urn=self.actor_urn)

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Every failure path (tell handler, on_start, on_stop, on_failure) lands here.
        if self._exit_reason is None:
            self._exit_reason = exception_value or RuntimeError("unknown failure")
        super()._handle_failure(exception_type, exception_value, traceback)

    def _handle_receive(self, message: Any) -> Any:
        try:
            return super()._handle_receive(message)
        except Exception:
            raise
        except BaseException as exc:  # never let one reach pykka's stop_all()
            demoted = ChildBaseException(repr(exc))
            if self.actor_stopped.is_set() and self._exit_reason is None:
                self._exit_reason = demoted  # raised from on_stop
            raise demoted from exc

    def _actor_loop(self) -> None:
        try:
            super()._actor_loop()
        except BaseException:  # e.g. SystemExit from on_start: pykka only catches Exception
            self._handle_failure(*sys.exc_info())
            self._actor_loop_teardown()
        finally:
            self.ctx.report_exit(self._exit_reason, urn=self.actor_urn)

    def _actor_loop_teardown(self) -> None:
        # Holding my name's delivery lock closes pykka's tell-after-drain race: a tell that
        # comes later finds me dead and is held for my successor.
        with self.ctx.directory.delivery_lock_for(self.ctx.name):
            leftovers = self._drain_inbox()
        if leftovers:
            try:
                self.ctx.return_unprocessed(self.actor_urn, leftovers)
            except Exception:
                log.exception("could not requeue %d messages of %s", len(leftovers), self.ctx.path)

    def _drain_inbox(self) -> list[Any]:
        leftovers: list[Any] = []
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            stop = isinstance(envelope.message, messages._ActorStop)
            if envelope.reply_to is not None:
                if stop:
                    envelope.reply_to.set(None)
                else:
                    err = ActorDeadError(f"{self.actor_ref} stopped before handling the message")
                    envelope.reply_to.set_exception(exc_info=(ActorDeadError, err, None))
            elif not stop and not isinstance(envelope.message, SupervisorMessage):
                leftovers.append(envelope.message)
        return leftovers
