"""Base class for children that report their own death to their supervisor by message."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pykka
from pykka import ActorDeadError, ThreadingFuture, messages

from supervisors import inline
from supervisors.messages import Batch, SupervisorMessage

if TYPE_CHECKING:
    from types import TracebackType

    from supervisors.context import ChildContext

__all__ = ["OUTBOX_MAX", "ChildBaseException", "SupervisedActor"]

log = logging.getLogger("supervisors")

# pykka's own messages (`Actor._handle_receive`); anything else goes to on_receive. Exact
# types (a set lookup, not four isinstance checks per message): pykka's are final
# NamedTuples that nobody subclasses.
_PYKKA_MESSAGES = frozenset(
    (
        messages._ActorStop,
        messages.ProxyCall,
        messages.ProxyGetAttr,
        messages.ProxySetAttr,
    )
)

# Messages posted at most before the outbox goes out even though more wait in the mailbox:
# bounds the delay batching adds to one message (a few handler runs, not a whole flood).
OUTBOX_MAX = 64


class Inbox(queue.SimpleQueue[Any]):
    """A thread's mailbox: put/get in C (no Python Condition per message). `empty()` is
    also False while its actor holds tells it posted but has not sent yet, so "every
    mailbox empty" still means the tree is idle (tests, the backtest driver)."""

    holding = False

    def empty(self) -> bool:
        return not self.holding and not self.qsize()


class ChildBaseException(Exception):
    """A BaseException (SystemExit, ...) raised by a child, demoted so that pykka does not
    answer it with ActorRegistry.stop_all()."""


class SupervisedActor(pykka.ThreadingActor):
    """Reports normal stop, tell-handler failure, on_start and on_stop failure to its parent.

    Subclasses use on_start/on_stop/on_failure/on_receive normally; no super() calls needed.
    Tells still queued when the instance dies go back to the Directory, so a restarted
    instance receives them instead of pykka silently dropping them.

    Tells sent with `post` leave as one `Batch` per receiver at the end of the mailbox
    turn: when the mailbox is empty, before a reply is set (an asker never sees an answer
    before the tells that preceded it), at a failure, or between two handled messages once
    `OUTBOX_MAX` wait (never among one handler's sends, whose order it keeps). Each
    hop of a busy pipeline then costs one queue put and one thread wake-up per batch
    instead of per message; an idle one sends each message at once, as before. A received
    Batch is handled message by message in one turn; if one fails, the rest of the batch
    goes back to the Directory with the other unprocessed tells.

    An actor at the head of a pipeline may set `linger_s`: while it is busy (what it held
    last went less than `linger_s` ago) what it holds (`hold`: the outbox, or bulk work
    such as the store's writes) waits up to that long for more, so a busy source sends
    fewer, fuller batches and every stage after it handles them in fewer turns (a
    wake-up of an idle thread costs ~10x a hop to a busy one). After a quiet spell the
    first message goes at once: no added latency.
    """

    actor_inbox: Any  # an Inbox, or the deterministic scheduler's InlineInbox
    linger_s = 0.0  # how long posted tells may wait for more while the mailbox is empty

    def __init__(self, ctx: ChildContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._exit_reason: BaseException | None = None
        # the deterministic scheduler delivers one message per token, in send order
        self._batching = not isinstance(self.actor_inbox, inline.InlineInbox)
        self._outbox: dict[str, list[Any]] = {}
        self._posted = 0
        self._held_since = 0.0  # when something began waiting for the end of the turn
        self._last_release = 0.0  # when what waited last went (with linger_s)
        self._batch_left = 0  # messages of the Batch being handled still to come
        self._rest: list[Any] = []  # the unhandled rest of a Batch whose handler failed
        self._thread_id: int | None = None

    # -- the runtime seam: a thread each (live), or the deterministic scheduler ----------

    @staticmethod
    def _create_actor_inbox() -> Any:
        sched = inline.current()
        return Inbox() if sched is None else sched.new_inbox()

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

    # -- batched tells ------------------------------------------------------------------

    def post(self, name: str, message: Any) -> bool:
        """Tell `name` through the Directory at the end of this mailbox turn (see the
        class docstring). False only when it is known at once to have reached nobody."""
        if not self._batching or threading.get_ident() != self._thread_id:
            return self._deliver(name, [message])  # not from my own thread: at once
        box = self._outbox.get(name)
        if box is None:
            self._outbox[name] = [message]
        else:
            box.append(message)
        self._posted += 1
        if not self._held_since:
            self.hold()
        return True

    def flush_outbox(self) -> None:
        """Send what was posted: one message as itself, several as one Batch."""
        if not self._posted:
            return
        outbox, self._outbox, self._posted = self._outbox, {}, 0
        for name, msgs in outbox.items():
            self._deliver(name, msgs)

    def _deliver(self, name: str, msgs: list[Any]) -> bool:
        msg = msgs[0] if len(msgs) == 1 else Batch(tuple(msgs))
        if self.ctx.directory.tell(name, msg):
            return True
        self.undelivered(name, len(msgs))
        return False

    def undelivered(self, name: str, n: int) -> None:
        """Hook: `n` posted messages reached no live `name` (dead letters)."""

    def more_queued(self) -> bool:
        """More messages wait for this turn (in the Batch being handled, or the mailbox):
        work that is cheaper in bulk (a database commit) can wait for the last one."""
        if self._batch_left > 0:
            return True
        inbox = self.actor_inbox
        return inbox.qsize() > 0 if self._batching else not inbox.empty()

    def hold(self) -> bool:
        """Something waits for the end of the turn (or of the linger): posted tells, or a
        subclass's bulk work. Until `release_held` runs, my mailbox does not count as
        empty (idle checks). False under the deterministic scheduler: do it now."""
        if not self._batching:
            return False
        if not self._held_since:
            self._held_since = time.monotonic()
            self.actor_inbox.holding = True
        return True

    def release_held(self) -> None:
        """Do what waited (a subclass adds its bulk work, then calls this)."""
        self.flush_outbox()

    def _release(self) -> None:
        self._held_since = 0.0
        if self.linger_s:
            self._last_release = time.monotonic()
        self.release_held()
        if not self._held_since:  # idle only once the work is done, not when it starts
            self.actor_inbox.holding = False

    def _actor_loop_running(self) -> None:
        # pykka's loop, plus the end of each turn: what is held (the outbox) goes when the
        # mailbox is empty (or the linger is over) and always before a reply is set or a
        # failure is handled.
        self._thread_id = threading.get_ident()
        self.flush_outbox()  # what on_start posted
        inbox = self.actor_inbox
        stopped = self.actor_stopped
        linger = self.linger_s
        while not stopped.is_set():
            if self._held_since and linger:  # still lingering for more
                wait = self._held_since + linger - time.monotonic()
                if wait <= 0:
                    self._release()  # lingered long enough, busy or not
                    continue
                try:
                    envelope = inbox.get(timeout=wait)
                except queue.Empty:
                    self._release()
                    continue
            else:
                envelope = inbox.get()
            reply_to = envelope.reply_to
            try:
                response = self._handle_receive(envelope.message)
                if self._held_since and (
                    reply_to is not None
                    or stopped.is_set()
                    or (
                        not inbox.qsize()
                        and (not linger or time.monotonic() - self._last_release >= linger)
                    )
                ):
                    self._release()
                if reply_to is not None:
                    reply_to.set(response)
            except Exception:
                self._flush_quietly()
                if reply_to is not None:
                    log.info("exception returned from %s to caller", self, exc_info=True)
                    reply_to.set_exception()
                else:
                    self._handle_failure(*sys.exc_info())
                    try:
                        self.on_failure(*sys.exc_info())
                    except Exception:
                        self._handle_failure(*sys.exc_info())
                    self._flush_quietly()  # what on_failure posted

    def _flush_quietly(self) -> None:
        try:
            if self._held_since:
                self._release()
            else:
                self.flush_outbox()
        except Exception:
            log.exception("%s: could not send its outbox", self.ctx.path)

    def _handle_receive(self, message: Any) -> Any:
        if type(message) is Batch:
            msgs = message.messages
            left = len(msgs)
            handle = self._handle_one
            for one in msgs:
                left -= 1
                self._batch_left = left
                try:
                    handle(one)
                except BaseException:
                    self._rest = list(msgs[len(msgs) - left :])  # requeued at teardown, in order
                    self._batch_left = 0
                    raise
            return None
        return self._handle_one(message)

    def _handle_one(self, message: Any) -> Any:
        try:
            if type(message) in _PYKKA_MESSAGES:  # stop, proxy calls: pykka's own way
                result = super()._handle_receive(message)
            else:
                result = self.on_receive(message)  # what pykka would do, minus 4 isinstance
        except Exception:
            raise
        except BaseException as exc:  # never let one reach pykka's stop_all()
            demoted = ChildBaseException(repr(exc))
            if self.actor_stopped.is_set() and self._exit_reason is None:
                self._exit_reason = demoted  # raised from on_stop
            raise demoted from exc
        if self._posted >= OUTBOX_MAX:
            # A full outbox goes out between two messages, never among one handler's sends:
            # a handler that tells A then B (which may answer A at once) has A's tell
            # leave first, as the receivers' order in the outbox says.
            self.flush_outbox()
        return result

    def _actor_loop(self) -> None:
        try:
            super()._actor_loop()
        except BaseException:  # e.g. SystemExit from on_start: pykka only catches Exception
            self._handle_failure(*sys.exc_info())
            self._actor_loop_teardown()
        finally:
            self.ctx.report_exit(self._exit_reason, urn=self.actor_urn)

    def _actor_loop_teardown(self) -> None:
        self._flush_quietly()  # what on_stop posted
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
        leftovers: list[Any] = self._rest
        self._rest = []
        while self.actor_inbox.qsize() if self._batching else not self.actor_inbox.empty():
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
