"""A whole AEGIS tree whose three roles talk to fake LLM servers, driven on a virtual clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import settle
from llm_fake import FakeLlm

from aegis_actors.app import Aegis
from aegis_actors.context import K_MODE, K_POSTURE
from aegis_actors.messages import GetStatus, MarketEvent
from aegis_actors.runtime import ANALYST, COMMANDER, MARKET, VERIFIER, WATCHDOG
from aegis_actors.store.factory import open_database
from supervisors.clock import VirtualClock

ROLES = (ANALYST, VERIFIER, COMMANDER)


def llm_roles(primary: str, backup: str = "", **per_role: dict[str, Any]) -> dict[str, Any]:
    """Settings for the three roles on the llm backend (commander on the Anthropic format)."""
    roles: dict[str, Any] = {k: v for k, v in per_role.items() if k not in ROLES}
    for role in ROLES:
        cfg: dict[str, Any] = {"backend": "llm", "url": primary, "backup_url": backup}
        if role == VERIFIER:
            cfg.update(model="deepseek-reasoner", timeout_s=4.0, failover_after_s=2.0)
        if role == COMMANDER:
            cfg.update(
                api="anthropic", model="claude-opus-4-1", timeout_s=2.0, failover_after_s=1.0
            )
        cfg.update(per_role.get(role, {}))
        roles[role] = cfg
    return roles


@dataclass
class Rig:
    app: Aegis
    clock: VirtualClock
    servers: list[FakeLlm]
    db_path: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rt(self) -> Any:
        assert self.app.rt is not None
        return self.app.rt

    def role(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.rt.directory.ask(name, GetStatus(), 5.0)
        return status

    def outstanding(self) -> int:
        """HTTP calls sent and not yet handled; -1 while a free worker has one to send."""
        total = 0
        for r in ROLES:
            st = self.role(r)
            if st.get("queued", 0) and st["http_out"] < st["workers"]:
                return -1
            total += int(st["http_out"])
        return total

    def quiet(self, timeout: float = 5.0) -> None:
        """Idle: mailboxes empty and every HTTP call still out is parked at a server
        waiting for a later (virtual) time."""
        deadline = time.monotonic() + timeout
        while True:
            settle(timeout)
            if self.outstanding() == sum(s.parked() for s in self.servers):
                settle(timeout)
                if self.outstanding() == sum(s.parked() for s in self.servers):
                    return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"not quiet: {self.outstanding()} calls out, "
                    f"{sum(s.parked() for s in self.servers)} parked"
                )
            time.sleep(0.002)

    def drive(self, seconds: float, step: float = 0.0625) -> None:
        """Advance in steps (binary fractions: exact sums, so a 2 s latency ends on a step)."""
        end = self.clock.now() + seconds
        self.quiet()
        while self.clock.now() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.now()))
            self.quiet()

    def event(self, symbol: str = "AAPL", price: float = 100.0, history: int = 30) -> str:
        """Put price history in the cache and send one market event through the gateway."""
        now = self.clock.now()
        for i in range(history):
            self.rt.cache.push_price(
                symbol, price * (1 + 0.0005 * (i - history)), now - history + i
            )
        ev = MarketEvent(
            event_id=f"ev-{symbol}-{now:.3f}-{len(self.events)}", symbol=symbol, price=price, ts=now
        )
        self.events.append({"type": "sent", "event_id": ev.event_id})
        self.rt.directory.tell(MARKET, ev)
        return ev.event_id

    def watchdog(self) -> dict[str, Any]:
        result: dict[str, Any] = self.rt.directory.ask(WATCHDOG, GetStatus(), 5.0)
        return result

    def mode(self) -> str:
        return str(self.rt.cache.get_json(K_MODE))

    def posture(self) -> str:
        doc = self.rt.cache.get_json(K_POSTURE) or {}
        return str(doc.get("posture"))

    def alerts(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "alert" and e.get("kind") == kind]

    def decisions(self) -> list[dict[str, Any]]:
        db = open_database(sqlite_path=str(self.db_path))
        try:
            return db.select("decisions", order_by="id")
        finally:
            db.close()

    def orders(self) -> list[dict[str, Any]]:
        db = open_database(sqlite_path=str(self.db_path))
        try:
            return db.select("orders")
        finally:
            db.close()


def make_rig(
    aegis_factory: Callable[..., Aegis],
    aegis_env: Path,
    clock: VirtualClock,
    servers: list[FakeLlm],
    roles: dict[str, Any],
    **sections: Any,
) -> Rig:
    db_path = aegis_env / "var" / f"aegis-{len(servers)}-{time.monotonic_ns()}.db"
    sections.setdefault("feed", {"symbols": ["AAPL", "MSFT"], "tick_interval_s": 1e6})
    sections.setdefault("store", {"sqlite_path": str(db_path)})
    app = aegis_factory(roles=roles, **sections)
    rig = Rig(app=app, clock=clock, servers=servers, db_path=db_path)
    assert app.rt is not None
    app.rt.event_sinks.append(rig.events.append)
    return rig
