"""The bench's exchange: a tape of trades over a real websocket, in Alpaca's protocol."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import websocket
from feed_server import TapeServer

from aegis_actors.gateway.protocols import DECODERS, alpaca_auth, alpaca_subscribe, decode_frame


def handshake(url: str) -> websocket.WebSocket:
    ws = websocket.create_connection(url, timeout=10)
    assert json.loads(ws.recv())[0]["msg"] == "connected"
    ws.send(alpaca_auth("k", "s"))
    assert json.loads(ws.recv())[0]["msg"] == "authenticated"
    ws.send(alpaca_subscribe(["A", "B", "C"], [], []))
    assert json.loads(ws.recv())[0]["T"] == "subscription"
    return ws


def prints(ws: websocket.WebSocket, n: int) -> tuple[list[tuple[Any, ...]], int]:
    got: list[tuple[Any, ...]] = []
    frames = 0
    while len(got) < n:
        items = decode_frame(ws.recv())
        assert not isinstance(items, str)
        frames += 1
        got.extend(DECODERS["alpaca"](obj) for obj in items)
    return got, frames


def test_the_tape_plays_n_trades_once_go_is_set_symbols_in_turn_from_their_start_prices() -> None:
    go = threading.Event()
    srv = TapeServer(
        ["A", "B", "C"],
        0.0,
        250,
        go,
        start_prices=[10.0, 20.0, 30.0],
        per_frame=100,
        key="k",
        secret="s",
    ).start()
    closing: list[websocket.WebSocket] = []
    try:
        ws = handshake(srv.url)
        closing.append(ws)
        go_at = time.time()
        go.set()
        got, frames = prints(ws, 250)
        assert min(item[4] for item in got) >= go_at - 0.001  # stamped when sent: after go
        assert len(got) == 250 and frames == 3  # 100 + 100 + 50: as many as due, per frame
        assert all(item[0] == "print" for item in got)
        assert [item[1] for item in got[:6]] == ["A", "B", "C", "A", "B", "C"]
        for k, start in enumerate((10.0, 20.0, 30.0)):
            walk = [item[2] for item in got[k::3]]
            assert abs(walk[0] / start - 1) < 0.02  # a random walk from the start price
            assert len(set(walk)) > 1 and all(p == round(p, 2) for p in walk)
            stamps = [item[4] for item in got[k::3]]
            assert stamps == sorted(stamps)  # never backwards for a symbol
    finally:
        for ws in closing:
            ws.close()
        srv.stop()
