"""Small servers the gateway tests (and the bench) start on 127.0.0.1.

`FeedServer` speaks Alpaca's market-data stream protocol (connected -> auth -> subscribe,
then arrays of `t`/`q`/`b` messages) or the plain JSON one, with the `websockets` package
on its own asyncio thread. It can be cut (every connection closed and new ones refused
with 503) and restored, or killed outright. `HttpJson` serves JSON documents over
http.server for the calendar and news pollers.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def trade(symbol: str, price: Any, ts: float, size: Any = 100) -> dict[str, Any]:
    return {"T": "t", "S": symbol, "i": 1, "x": "V", "p": price, "s": size, "t": rfc3339(ts)}


class FeedServer:
    def __init__(self, protocol: str = "alpaca", key: str = "key-id", secret: str = "s3cret"):
        self.protocol = protocol
        self.key = key
        self.secret = secret
        self.port = 0
        self.down = False
        self.auths: list[dict[str, Any]] = []
        self.subscriptions: list[dict[str, Any]] = []
        self.connections = 0
        self.refused = 0
        self.greeting: list[str] = []  # frames sent to every client once it is subscribed
        self.greeting_rate = 0.0  # frames per second for the greeting; 0 = as fast as it can
        self._ready: set[ServerConnection] = set()
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- control from the test thread -------------------------------------------------

    def start(self) -> FeedServer:
        self._thread.start()
        self._call(self._start())
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    @property
    def ready(self) -> int:
        return len(self._ready)

    def cut(self) -> None:
        """The network drops: every connection closes, new ones are refused."""
        self.down = True
        self._call(self._close_all())

    def restore(self) -> None:
        self.down = False

    def kill(self) -> None:
        """The server is gone for good (its port closes)."""
        self.down = True
        self._call(self._kill())

    def stop(self) -> None:
        if self._thread.is_alive():
            self.kill()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def send(self, payload: Any) -> None:
        """One frame to every subscribed client (dicts/lists are JSON-encoded)."""
        self.send_frames([payload])

    def send_frames(self, frames: Iterable[Any]) -> None:
        texts = [f if isinstance(f, str | bytes) else json.dumps(f) for f in frames]
        self._call(self._broadcast(texts))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # -- the server (event loop thread) ------------------------------------------------

    async def _start(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, process_request=self._admit, max_queue=None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _admit(self, conn: ServerConnection, _req: Request) -> Response | None:
        if self.down:
            self.refused += 1
            return conn.respond(HTTPStatus.SERVICE_UNAVAILABLE, "feed down\n")
        return None

    async def _close_all(self) -> None:
        for conn in list(self._ready):
            await conn.close(1012, "going down")
        self._ready.clear()

    async def _kill(self) -> None:
        await self._close_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _broadcast(self, texts: list[str | bytes]) -> None:
        for conn in list(self._ready):
            try:
                for text in texts:
                    await conn.send(text)
            except ConnectionClosed:
                self._ready.discard(conn)

    async def _handle(self, conn: ServerConnection) -> None:
        self.connections += 1
        try:
            if self.protocol == "alpaca" and not await self._alpaca_handshake(conn):
                return
            self._ready.add(conn)
            if self.greeting:
                asyncio.get_running_loop().create_task(self._greet(conn))
            async for _msg in conn:  # further actions are acknowledged by silence
                pass
        except ConnectionClosed:
            pass
        finally:
            self._ready.discard(conn)

    async def _greet(self, conn: ServerConnection) -> None:
        gap = 1.0 / self.greeting_rate if self.greeting_rate else 0.0
        start = asyncio.get_running_loop().time()
        try:
            for i, text in enumerate(self.greeting):
                await conn.send(text)
                if gap:
                    delay = start + (i + 1) * gap - asyncio.get_running_loop().time()
                    await asyncio.sleep(max(0.0, delay))
        except ConnectionClosed:
            pass

    async def _alpaca_handshake(self, conn: ServerConnection) -> bool:
        await conn.send(json.dumps([{"T": "success", "msg": "connected"}]))
        auth = json.loads(await conn.recv())
        self.auths.append(auth)
        if auth.get("action") != "auth" or (auth.get("key"), auth.get("secret")) != (
            self.key,
            self.secret,
        ):
            await conn.send(json.dumps([{"T": "error", "code": 402, "msg": "auth failed"}]))
            await conn.close()
            return False
        await conn.send(json.dumps([{"T": "success", "msg": "authenticated"}]))
        sub = json.loads(await conn.recv())
        self.subscriptions.append(sub)
        if sub.get("action") != "subscribe":
            await conn.send(json.dumps([{"T": "error", "code": 400, "msg": "invalid syntax"}]))
            return False
        ack = {"T": "subscription", **{k: sub.get(k, []) for k in ("trades", "quotes", "bars")}}
        await conn.send(json.dumps([ack]))
        return True


class HttpJson:
    """Serves `docs[path]` as JSON; counts requests per path."""

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                if self.path not in outer.docs:
                    self.send_error(404)
                    return
                body = json.dumps(outer.docs[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HttpJson:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TapeServer(FeedServer):
    """An Alpaca server that plays a tape of `n` trades at `rate` a second (0: at once) to
    its first subscribed client, from when `go` is set: symbols in turn, each price a
    random walk in cents from its start price, every trade stamped when its frame is
    sent, as many trades per frame as came due since the last look (at most `per_frame`,
    as Alpaca batches)."""

    def __init__(
        self,
        symbols: list[str],
        rate: float,
        n: int,
        go: Any,
        *,
        start_prices: list[float] | None = None,
        per_frame: int = 100,
        seed: int = 1,
        key: str = "key-id",
        secret: str = "s3cret",
    ) -> None:
        super().__init__("alpaca", key, secret)
        self.tape = (symbols, rate, n, per_frame, seed)
        self.start_prices = start_prices or [100.0] * len(symbols)
        self.go = go  # a threading or multiprocessing Event
        self.greeting = ["tape"]  # greet (play) the first client only
        self.played = False

    async def _greet(self, conn: ServerConnection) -> None:
        if self.played:
            return
        self.played = True
        symbols, rate, n, per_frame, seed = self.tape
        rng = random.Random(seed)
        prices = list(self.start_prices)
        k = len(symbols)
        loop = asyncio.get_running_loop()
        while not self.go.is_set():
            await asyncio.sleep(0.001)
        t0, sent = loop.time(), 0
        try:
            while sent < n:
                due = n if not rate else min(n, int((loop.time() - t0) * rate) + 1)
                while sent < due:
                    stamp = rfc3339(time.time())
                    items = []
                    for i in range(sent, min(due, sent + per_frame)):
                        j = i % k
                        prices[j] = max(0.01, round(prices[j] * (1 + rng.gauss(0, 0.002)), 2))
                        items.append(
                            {
                                "T": "t",
                                "S": symbols[j],
                                "i": i,
                                "x": "V",
                                "p": prices[j],
                                "s": 100,
                                "t": stamp,
                            }
                        )
                    sent += len(items)
                    await conn.send(json.dumps(items))
                await asyncio.sleep(0.001)
        except ConnectionClosed:
            pass


def serve_tape(symbols: list[str], rate: float, n: int, go: Any, out: Any, **kw: Any) -> None:
    """A child process's whole life: a `TapeServer` on 127.0.0.1, its URL put on `out`
    (the exchange in its own process: it does not share the measured process's GIL)."""
    srv = TapeServer(symbols, rate, n, go, **kw).start()
    out.put(srv.url)
    threading.Event().wait()
