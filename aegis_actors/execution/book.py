"""The order book: orders working at the broker (`live`), sent with the answer lost
(`unknown`, until the sweep or reconciliation asks the broker), and held for the
verifier (`awaiting`). Each live order carries its lifecycle state (lifecycle.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aegis_actors.execution.lifecycle import OrderState
from aegis_actors.messages import Decision, Order

BEFORE = "(filled before this process)"  # a fill id for qty filled before we tracked it


@dataclass
class Live:
    order: Order
    filled: float = 0.0
    notional: float = 0.0
    reason: str = ""  # exit reason for exits
    extra: dict[str, Any] = field(default_factory=dict)
    state: OrderState = field(init=False)

    def __post_init__(self) -> None:
        self.state = OrderState(self.order.qty)
        if self.filled > 0:
            self.state.fills[BEFORE] = self.filled


@dataclass
class Pending:
    """An order held until the verifier confirms its symbol's price (SPEC 4.3)."""

    order: Order
    decision: Decision | None
    reason: str


class OrderBook:
    def __init__(self) -> None:
        self.live: dict[str, Live] = {}
        self.unknown: dict[str, Live] = {}
        self.awaiting: dict[str, list[Pending]] = {}  # symbol -> orders held for the verifier
        self.confirm_asked: dict[str, tuple[str, float]] = {}  # symbol -> (request id, at)

    def working_entry(self, symbol: str) -> bool:
        # read per decision: plain loops, no tuple of every order built per call
        for orders in (self.live, self.unknown):
            for lv in orders.values():
                if lv.order.symbol == symbol and lv.order.intent == "entry":
                    return True
        held = self.awaiting.get(symbol)
        if not held:
            return False
        return any(p.order.intent == "entry" for p in held)

    def entry_scan(self, symbol: str) -> tuple[bool, int]:
        """`(working_entry(symbol), entries_in_flight())` in one pass: an entry decision
        reads both, and nothing moves the book between the two reads when it reverses
        nothing."""
        working = False
        n = 0
        for orders in (self.live, self.unknown):
            for lv in orders.values():
                order = lv.order
                if order.intent == "entry":
                    n += 1
                    if order.symbol == symbol:
                        working = True
        for held_symbol, ps in self.awaiting.items():
            for p in ps:
                if p.order.intent == "entry":
                    n += 1
                    if held_symbol == symbol:
                        working = True
        return working, n

    def entries_in_flight(self) -> int:
        """Entries that may still become positions: working, unknown or held."""
        n = 0
        for orders in (self.live, self.unknown):
            for lv in orders.values():
                if lv.order.intent == "entry":
                    n += 1
        for ps in self.awaiting.values():
            for p in ps:
                if p.order.intent == "entry":
                    n += 1
        return n

    def find(self, client_order_id: str) -> Live | None:
        """A fill's order, working or unknown (an unknown one is working again)."""
        live = self.live.get(client_order_id) or self.unknown.pop(client_order_id, None)
        if live is not None:
            self.live[client_order_id] = live
        return live
