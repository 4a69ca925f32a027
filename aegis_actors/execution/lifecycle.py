"""The order state machine: which status may follow which, and how broker events move
an order (new -> accepted -> partially_filled -> filled | cancelled | rejected | expired;
`unknown` only until the broker answers).

Events come in any order a venue can produce (a late ack, a fill racing a cancel, the
same fill reported twice), so each event either moves the order along a legal edge or is
ignored with a reason; a fill is never dropped: a fill on an order already cancelled or
expired is still counted, and completes the order if it fills it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aegis_actors.messages import OPEN_STATUSES, OrderStatus

_S = OrderStatus
_EPS = 1e-9

LEGAL: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.NEW: frozenset(
        {_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED}
        | {_S.UNKNOWN}
    ),
    _S.UNKNOWN: frozenset(
        {_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED}
    ),
    _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED}),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED}),
    # A fill that won the race with a cancel (or an expiry) still completes the order.
    _S.CANCELLED: frozenset({_S.FILLED}),
    _S.EXPIRED: frozenset({_S.FILLED}),
    _S.FILLED: frozenset(),
    _S.REJECTED: frozenset(),
}


class IllegalTransition(Exception):
    """A move the state machine forbids: a bug in whoever asked for it."""


@dataclass(frozen=True)
class Acked:
    """The broker took the order."""


@dataclass(frozen=True)
class Filled:
    fill_id: str
    qty: float


@dataclass(frozen=True)
class Cancelled:
    reason: str = ""


@dataclass(frozen=True)
class Expired:
    pass


@dataclass(frozen=True)
class Rejected:
    reason: str = ""


@dataclass(frozen=True)
class AnswerLost:
    """Sent, but the broker's answer never came (network error): `unknown`."""


Event = Acked | Filled | Cancelled | Expired | Rejected | AnswerLost


@dataclass(frozen=True)
class Transition:
    old: OrderStatus
    new: OrderStatus
    ignored: str = ""  # why the event changed nothing ("" when it was applied)

    @property
    def moved(self) -> bool:
        return self.old is not self.new


@dataclass
class OrderState:
    """One order's status and the distinct fills it has had."""

    qty: float
    status: OrderStatus = OrderStatus.NEW
    fills: dict[str, float] = field(default_factory=dict)

    @property
    def filled_qty(self) -> float:
        return sum(self.fills.values())

    @property
    def complete(self) -> bool:
        return self.filled_qty >= self.qty - _EPS

    def apply(self, event: Event) -> Transition:
        old = self.status
        new, why = self._next(event)
        if new is not old:
            if new not in LEGAL[old]:
                raise IllegalTransition(f"{old} -> {new} on {event}")
            self.status = new
        return Transition(old, new, why)

    def _next(self, event: Event) -> tuple[OrderStatus, str]:
        s = self.status
        if isinstance(event, Filled):
            if event.fill_id in self.fills:
                return s, "fill already counted"
            self.fills[event.fill_id] = event.qty
            if self.complete and s is not _S.REJECTED:
                return _S.FILLED, ""
            if s in OPEN_STATUSES or s is _S.UNKNOWN:
                return _S.PARTIALLY_FILLED, ""
            return s, f"fill counted on an order already {s}"
        if isinstance(event, Acked):
            if s in (_S.NEW, _S.UNKNOWN):
                return _S.ACCEPTED, ""
            return s, f"late ack on an order already {s}"
        if isinstance(event, AnswerLost):
            return (_S.UNKNOWN, "") if s is _S.NEW else (s, f"answer lost, already {s}")
        if s not in OPEN_STATUSES and s is not _S.UNKNOWN:
            return s, f"{type(event).__name__.lower()} on an order already {s}"
        if isinstance(event, Cancelled):
            return _S.CANCELLED, ""
        if isinstance(event, Expired):
            return _S.EXPIRED, ""
        # Rejected: after a partial fill the rest is simply not worked any more.
        return (_S.CANCELLED if self.filled_qty > _EPS else _S.REJECTED), ""
