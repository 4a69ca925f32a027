"""Issue 11, defect 6 with PostgreSQL frozen (a black hole: the connection stays open and
nothing comes back): the store used to block for good inside psycopg2, and every
write-ahead (stop-losses included) behind it. Now a silent server is an outage after
`store.io_timeout_s`: the stop-loss goes out on the local spool and is in the ledger
once PostgreSQL answers again."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
from conftest import settle, wait_until

from aegis_actors.brokers import BrokerOrder, OrderType, PaperBroker, Side
from aegis_actors.brokers.durable_paper import DurablePaperBroker
from aegis_actors.messages import GetStatus, Tick
from aegis_actors.runtime import EXECUTION, STORE
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock


class FreezingProxy:
    """Forwards to PostgreSQL until `frozen`: then every byte either way is swallowed."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                return
            upstream.settimeout(None)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self.frozen:
                    dst.sendall(data)

    def close(self) -> None:
        for s in [self.sock, *self.conns]:
            with contextlib.suppress(OSError):
                s.close()


@pytest.mark.integration
def test_stop_loss_goes_out_while_postgres_is_frozen(
    aegis_factory: Callable[..., Any], aegis_env: Path, pg_dsn: str, vclock: VirtualClock
) -> None:
    state = aegis_env / "var" / "paper.json"
    broker = DurablePaperBroker(PaperBroker(clock_now=vclock.now), str(state))
    broker.on_price("AAPL", 100.0, vclock.now())
    broker.submit(BrokerOrder("ae-entry", "AAPL", Side.BUY, 10.0, OrderType.MARKET))
    entry = broker.poll_fills()[0]
    db = open_database(postgres_dsn=pg_dsn)
    db.insert(
        "positions",
        {
            "symbol": "AAPL",
            "qty": 10.0,
            "avg_price": entry.price,
            "opened_at": 1000.0,
            "posture": "guerrilla",
            "stop_loss": 95.0,
            "take_profit": 120.0,
        },
    )
    params = psycopg2.extensions.parse_dsn(pg_dsn)
    proxy = FreezingProxy(params.get("host", "127.0.0.1"), int(params.get("port", "5432")))
    dsn = psycopg2.extensions.make_dsn(pg_dsn, host="127.0.0.1", port=proxy.port)
    try:
        app = aegis_factory(
            store={
                "postgres_dsn": dsn,
                "spool_path": str(aegis_env / "var" / "spool.db"),
                "io_timeout_s": 0.5,
                "connect_timeout_s": 1,
                "retry_initial_s": 1.0,
                "retry_max_s": 1.0,
            },
            broker={"paper_state_path": str(state)},
            feed={"symbols": ["SPY"]},
        )
        d = app.rt.directory
        proxy.frozen = True
        d.tell(EXECUTION, Tick(symbol="AAPL", price=90.0, ts=vclock.now()))  # under the stop
        wait_until(lambda: app.broker.positions() == [], timeout=30, what="the stop-loss out")
        assert d.ask(STORE, GetStatus(), 5.0)["up"] is False

        proxy.frozen = False
        vclock.advance(1.5)
        wait_until(
            lambda: (s := d.ask(STORE, GetStatus(), 5.0))["up"] and s["spool"] == 0,
            timeout=30,
            what="the spool replayed",
        )
        settle()
        exits = [r for r in db.select("orders") if r["intent"] == "exit"]
        assert [(r["symbol"], r["status"], r["filled_qty"]) for r in exits] == [
            ("AAPL", "filled", 10.0)
        ]
        assert db.select("positions") == []
    finally:
        db.close()
        proxy.close()
