"""Commander sessions (SPEC 1.1): bounded units of decision work with saved state.

A session opens with injected context and closes after `store.session_s` (3 minutes on
the clock). Changed state is saved every `store.save_every_s` (10 s); a full save is made
when the session ends and when the commander stops. A restarted commander (or process)
resumes the last session that was saved and not closed, if it has not run out meanwhile;
one that ran out while nobody was there is closed at the moment it expired.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aegis_actors.context import K_SESSION
from aegis_actors.messages import DurableState, LoadState, SessionSave
from aegis_actors.runtime import STORE

if TYPE_CHECKING:
    from aegis_actors.base import AegisActor


class CommanderSession:
    """The commander's current session; all calls come from the commander's thread."""

    def __init__(self, owner: AegisActor, extra_state: Callable[[], dict[str, Any]]) -> None:
        self.owner = owner
        self.extra_state = extra_state
        self.length_s = owner.settings.store.session_s
        self.id = ""
        self.opened = 0.0
        self.decisions = 0
        self.dirty = False
        self.count = 0  # sessions opened or resumed by this commander
        self.resumed = False

    # -- life cycle --------------------------------------------------------------------

    def resume(self, now: float) -> None:
        """Pick up the last open session from the durable store (the cache if that fails)."""
        saved: dict[str, Any] | None
        try:
            saved = self.owner.ask(STORE, LoadState(symbol=""), 3.0, DurableState).session
        except Exception as exc:  # store down: the cache may still know the session id
            self.owner.log.warning("session state unavailable from the store: {}", exc)
            saved = self.owner.rt.cache.get_json(K_SESSION)
        if not saved or not saved.get("session_id"):
            return
        opened = float(saved.get("opened_at") or 0.0)
        state = saved.get("state") or {}
        if now - opened >= self.length_s:
            self.owner.send(
                STORE,
                SessionSave(
                    session_id=saved["session_id"],
                    opened_at=opened,
                    state=state,
                    ts=now,
                    closed_at=opened + self.length_s,
                    full=True,
                ),
            )
            self.owner.log.info("session {} ran out while stopped: closed", saved["session_id"])
            return
        self.id, self.opened = str(saved["session_id"]), opened
        self.decisions = int(state.get("decisions", 0))
        self.count += 1
        self.resumed = True
        self.publish()
        self.owner.log.info(
            "commander session {} resumed ({} decisions, {:.0f}s left)",
            self.id,
            self.decisions,
            self.length_s - (now - opened),
        )

    def ensure(self, now: float) -> None:
        """An open session for this event: the current one, or a fresh one."""
        if self.id and now - self.opened < self.length_s:
            return
        if self.id:
            self.save(now, closed=True)
        self.id = "ss-" + uuid.uuid4().hex[:12]
        self.opened = now
        self.decisions = 0
        self.count += 1
        self.dirty = True
        self.publish()
        self.owner.trace(None, "commander session {} opened", self.id)

    def decided(self) -> None:
        self.decisions += 1
        self.dirty = True

    def tick(self, now: float) -> None:
        """The 10-second save: close a session that ran out, else save it if it changed."""
        if self.id and now - self.opened >= self.length_s:
            self.save(now, closed=True)
            self.id = ""
            self.owner.rt.cache.delete(K_SESSION)
        elif self.dirty:
            self.save(now)

    def stop(self, now: float) -> None:
        """Full save on stop; left open, so a restart within the 3 minutes resumes it."""
        self.save(now, full=True)

    # -- saving ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"decisions": self.decisions, **self.extra_state()}

    def save(self, now: float, *, closed: bool = False, full: bool = False) -> None:
        if not self.id:
            return
        self.owner.send(
            STORE,
            SessionSave(
                session_id=self.id,
                opened_at=self.opened,
                state=self.state(),
                ts=now,
                closed_at=now if closed else None,
                full=closed or full,
            ),
        )
        self.dirty = False
        if closed:
            self.owner.trace(
                None, "commander session {} closed after {} decisions", self.id, self.decisions
            )

    def publish(self) -> None:
        self.owner.rt.cache.set_json(K_SESSION, {"session_id": self.id, "opened_at": self.opened})
