"""A harness that drives `ExecutionCore` without actors: recorded ports, a paper broker
wrapped to check every order at the moment it is sent, and a hand-turned clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from aegis_actors.brokers import Ack, BrokerOrder, PaperBroker
from aegis_actors.execution.core import ExecutionCore
from aegis_actors.messages import (
    DECISION,
    Action,
    Decision,
    EventDone,
    ModeChange,
    Msg,
    Order,
    Posture,
    RecordFill,
    Tick,
    TradingMode,
    WriteAhead,
    WriteAheadAck,
)
from aegis_actors.metrics import Metrics
from aegis_actors.settings import Settings

_ids = itertools.count()


@dataclass
class Clock:
    t: float = 1_000.0

    def now(self) -> float:
        return self.t


@dataclass
class Ports:
    posture: Posture | None = Posture.GUERRILLA
    sent: list[tuple[str, Msg]] = field(default_factory=list)
    ledger: dict[str, Order] = field(default_factory=dict)
    published: tuple[dict[str, Any], dict[str, Any]] | None = None
    store_down: bool = False
    is_stopping: bool = False

    def send(self, name: str, message: Msg) -> bool:
        self.sent.append((name, message))
        return True

    def write_ahead(self, order: Order) -> WriteAheadAck:
        if self.store_down:
            return WriteAheadAck(status=WriteAhead.ERROR, detail="store down")
        if order.client_order_id in self.ledger:
            return WriteAheadAck(status=WriteAhead.DUPLICATE)
        self.ledger[order.client_order_id] = order
        return WriteAheadAck(status=WriteAhead.NEW)

    def current_posture(self) -> Posture | None:
        return self.posture

    def ask(self, name: str, message: Msg, timeout: float, reply: type[Any]) -> Any:
        raise TimeoutError(f"no {name} in the harness")

    def recent_price(self, symbol: str) -> float | None:
        return None

    def run_stopping(self) -> bool:
        return self.is_stopping

    def publish(self, positions: dict[str, Any], account: dict[str, Any]) -> None:
        self.published = (positions, account)

    def of(self, kind: type, to: str | None = None) -> list[Any]:
        return [m for n, m in self.sent if isinstance(m, kind) and (to is None or n == to)]


class SpyBroker(PaperBroker):
    """The paper broker, plus: a skew on the price it reports (data mismatch), and a
    `checker` called with every order the moment it reaches the broker."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.skew: dict[str, float] = {}
        self.submitted: list[tuple[float, BrokerOrder]] = []
        self.checker: Any = None

    def submit(self, order: BrokerOrder) -> Ack:
        if self.checker is not None:
            self.checker(order)
        self.submitted.append((self._now(), order))
        return super().submit(order)

    def last_price(self, symbol: str) -> float | None:
        p = super().last_price(symbol)
        return None if p is None else p * self.skew.get(symbol, 1.0)


class Quiet:
    """A logger that drops everything (the property test logs thousands of orders)."""

    def bind(self, **_kw: Any) -> Quiet:
        return self

    def __getattr__(self, _name: str) -> Any:
        return lambda *a, **k: None


class Harness:
    def __init__(
        self, settings: Settings | None = None, *, quiet: bool = False, **broker_kw: Any
    ) -> None:
        self.settings = settings or Settings()
        self.clock = Clock()
        self.ports = Ports()
        broker_kw.setdefault("capital", self.settings.broker.capital)
        self.broker = SpyBroker(clock_now=self.clock.now, **broker_kw)
        self.core = ExecutionCore(
            self.broker,
            self.settings,
            self.clock.now,
            self.ports,
            Metrics(),
            Quiet() if quiet else logger.bind(actor="test"),
        )

    def tick(self, symbol: str, price: float) -> None:
        self.core.tick(Tick(symbol=symbol, price=price, ts=self.clock.now()))

    def decide(
        self,
        symbol: str,
        action: Action = Action.BUY,
        size: float = 1.0,
        posture: Posture | None = None,
        limit: float | None = None,
        ref: float = 100.0,
        reverse: bool = False,
    ) -> Decision:
        n = next(_ids)
        price = self.core.prices.get(symbol, ref)
        d = Decision(
            event_id=f"ev-{n}",
            decision_id=f"dc-{n}",
            symbol=symbol,
            action=action,
            size_fraction=size,
            limit_price=limit,
            confidence=0.8,
            posture=posture or self.ports.posture or Posture.GUERRILLA,
            reference_price=price,
            stamps={DECISION: self.clock.now()},
            reverse=reverse,
        )
        self.core.decide(d)
        return d

    def mode(self, new: TradingMode) -> None:
        self.core.mode_change(
            ModeChange(old=self.core.mode, new=new, reason="test", ts=self.clock.now())
        )

    def advance(self, seconds: float) -> None:
        self.clock.t += seconds
        self.core.sweep()

    def outcome(self, d: Decision) -> EventDone | None:
        done = [m for m in self.ports.of(EventDone, "market") if m.event_id == d.event_id]
        return done[-1] if done else None

    def fills(self) -> list[Any]:
        return [m.fill for m in self.ports.of(RecordFill)]
