"""A paper broker whose book survives the process, so a kill -9 behaves like a real
broker: the orders it accepted and the fills it made are still there after a restart.

After every call that changes the book the whole state is written to one file
atomically (temp file, fsync, rename). A kill between the inner broker's change and the
write loses that change at the "broker" too, exactly as if the call never reached it.
It also keeps a journal of every fill it made, so reconciliation can recover a fill the
ledger missed (`fills_for`), as a real broker's activity API would.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aegis_actors.brokers.base import (
    Account,
    Ack,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    OpenOrder,
    Side,
)
from aegis_actors.brokers.paper import PaperBroker


class DurablePaperBroker:
    """The `Broker` protocol over a `PaperBroker`, persisted to `path`."""

    name: str = "paper"
    durable: bool = True

    def __init__(self, inner: PaperBroker, path: str) -> None:
        self.inner = inner
        self.path = Path(path)
        self.journal: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, int] = {}  # submits per client order id, for audits
        if self.path.exists():
            state = json.loads(self.path.read_text())
            inner.restore_state(state["book"])
            self.journal = {f["fill_id"]: f for f in state["fills"]}
            self.sent = state.get("sent", {})
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    # -- writes: change the book, then persist it --------------------------------------

    def submit(self, order: BrokerOrder) -> Ack:
        self.sent[order.client_order_id] = self.sent.get(order.client_order_id, 0) + 1
        ack = self.inner.submit(order)
        self.save()
        return ack

    def cancel(self, client_order_id: str) -> bool:
        done = self.inner.cancel(client_order_id)
        if done:
            self.save()
        return done

    def cancel_all(self) -> list[str]:
        ids = self.inner.cancel_all()
        if ids:
            self.save()
        return ids

    def close_all_positions(self) -> list[Ack]:
        acks = self.inner.close_all_positions()
        if acks:
            self.save()
        return acks

    def on_price(
        self, symbol: str, price: float, ts: float, *, open_price: float | None = None
    ) -> list[BrokerFill]:
        fills = self.inner.on_price(symbol, price, ts, open_price=open_price)
        if fills:
            self.save(fills)
        return fills

    def poll_fills(self) -> list[BrokerFill]:
        fills = self.inner.poll_fills()
        if fills:
            self.save(fills)
        return fills

    # -- reads -------------------------------------------------------------------------

    def order(self, client_order_id: str) -> OpenOrder | None:
        return self.inner.order(client_order_id)

    def open_orders(self) -> list[OpenOrder]:
        return self.inner.open_orders()

    def positions(self) -> list[BrokerPosition]:
        return self.inner.positions()

    def account(self) -> Account:
        return self.inner.account()

    def last_price(self, symbol: str) -> float | None:
        return self.inner.last_price(symbol)

    def fills_for(self, client_order_id: str) -> list[BrokerFill]:
        """Every fill the broker made for that order, including ones not yet polled."""
        book = self.inner.export_state()
        rows = {**self.journal, **{f["fill_id"]: f for f in book["outbox"]}}
        return [
            BrokerFill(**{**f, "side": Side(f["side"])})
            for f in rows.values()
            if f["client_order_id"] == client_order_id
        ]

    # -- persistence -------------------------------------------------------------------

    def save(self, fills: list[BrokerFill] | None = None) -> None:
        book = self.inner.export_state()
        for f in [
            *(fills or []),
            *(BrokerFill(**{**o, "side": Side(o["side"])}) for o in book["outbox"]),
        ]:
            self.journal[f.fill_id] = {**asdict(f), "side": f.side.value}
        data = json.dumps(
            {"book": book, "fills": list(self.journal.values()), "sent": self.sent}, default=str
        )
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
