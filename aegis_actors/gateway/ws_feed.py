"""The market-data websocket client: its own reader thread, never the actor's.

The reader connects (primary first, then the backup), speaks the protocol's handshake
(Alpaca: auth then subscribe; the plain protocol has none), and hands every frame on
through `deliver` without blocking or parsing it: the market actor decodes frames in
batches. A dropped connection is retried with exponential backoff and jitter, and a
failed attempt moves to the other URL, so a dead primary is replaced by the backup after
one failed retry. Waits run on the clock (virtual in tests), pings keep the socket
honest: no frame within `ping_timeout_s` of a ping closes it and reconnects.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websocket

from aegis_actors.gateway.protocols import alpaca_auth, alpaca_subscribe, decode_frame
from supervisors import Clock

READ_POLL_S = 0.2  # real seconds a recv waits before the reader checks stop and pings
HANDSHAKE_FRAMES = 20  # frames read while waiting for an auth/subscription answer

Deliver = Callable[[float, Any], None]  # (receipt time on the clock, frame text | None=pong)
Report = Callable[[str, dict[str, Any]], None]  # (what happened, details)


class HandshakeError(Exception):
    """The server refused the handshake (bad keys, bad subscription, too many connections)."""


@dataclass
class ClientConfig:
    urls: list[str]
    protocol: str  # alpaca | json
    key: str = ""
    secret: str = ""
    trades: list[str] = field(default_factory=list)
    quotes: list[str] = field(default_factory=list)
    bars: list[str] = field(default_factory=list)
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 1.0
    reconnect_jitter: float = 0.2
    connect_timeout_s: float = 3.0
    ping_every_s: float = 5.0
    ping_timeout_s: float = 3.0


def backoff_delay(attempt: int, cfg: ClientConfig, rng: random.Random) -> float:
    """Exponential in the attempt number, capped, with +-jitter so clients do not herd."""
    base = min(cfg.reconnect_max_s, cfg.reconnect_initial_s * 2 ** max(0, attempt - 1))
    return max(0.0, base * (1.0 + cfg.reconnect_jitter * rng.uniform(-1.0, 1.0)))


class FeedClient:
    def __init__(
        self,
        cfg: ClientConfig,
        clock: Clock,
        deliver: Deliver,
        report: Report,
        rng: random.Random | None = None,
    ) -> None:
        if not cfg.urls:
            raise ValueError("a websocket feed needs at least one URL")
        self.cfg = cfg
        self.clock = clock
        self.deliver = deliver
        self.report = report
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self._waiting: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.url_index = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aegis-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the reader to end; True when it did within `timeout` real seconds."""
        self._stop.set()
        waiting = self._waiting
        if waiting is not None:
            waiting.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _wait(self, delay_s: float) -> None:
        """Sleep on the clock (virtual in tests), cut short by `stop`."""
        done = threading.Event()
        self._waiting = done
        timer = self.clock.call_later(delay_s, done.set)
        if self._stop.is_set():
            done.set()
        done.wait()
        timer.cancel()
        self._waiting = None

    # -- the reader --------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            url = self.cfg.urls[self.url_index]
            role = "primary" if self.url_index == 0 else "backup"
            ws: websocket.WebSocket | None = None
            try:
                ws = websocket.create_connection(
                    url,
                    timeout=self.cfg.connect_timeout_s,
                    skip_utf8_validation=True,
                    enable_multithread=False,
                )
                self._handshake(ws)
            except HandshakeError as exc:
                self.report("refused", {"url": url, "role": role, "error": str(exc)})
                _close(ws)
                ws = None
            except Exception as exc:  # refused, DNS, TLS, timeout, bad status: all retried
                self.report("connect_failed", {"url": url, "role": role, "error": _one_line(exc)})
                _close(ws)
                ws = None
            if ws is not None:
                attempt = 0
                self.report("connected", {"url": url, "role": role})
                self.deliver(self.clock.now(), None)  # a live link, even in a quiet market
                why = self._read(ws)
                _close(ws)
                self.report("disconnected", {"url": url, "role": role, "reason": why})
                if self._stop.is_set():
                    break
                attempt = 1  # first retry: the same URL, quickly
            else:
                attempt += 1
                if len(self.cfg.urls) > 1:
                    self.url_index = (self.url_index + 1) % len(self.cfg.urls)
            delay = backoff_delay(attempt, self.cfg, self.rng)
            self.report("retry", {"attempt": attempt, "delay_s": round(delay, 3)})
            self._wait(delay)

    def _handshake(self, ws: websocket.WebSocket) -> None:
        if self.cfg.protocol != "alpaca":
            return
        self._expect(ws, "success", "connected")
        ws.send(alpaca_auth(self.cfg.key, self.cfg.secret))
        self._expect(ws, "success", "authenticated")
        ws.send(alpaca_subscribe(self.cfg.trades, self.cfg.quotes, self.cfg.bars))
        self._expect(ws, "subscription", None)

    def _expect(self, ws: websocket.WebSocket, tag: str, msg: str | None) -> None:
        """Read until the answer `tag`/`msg` arrives; data seen on the way is delivered."""
        for _ in range(HANDSHAKE_FRAMES):
            frame = ws.recv()
            items = decode_frame(frame)
            if isinstance(items, str):
                raise HandshakeError(f"{items} frame during the handshake")
            for item in items:
                if not isinstance(item, dict):
                    continue
                if item.get("T") == "error":
                    raise HandshakeError(f"error {item.get('code')}: {item.get('msg')}")
                if item.get("T") == tag and (msg is None or item.get("msg") == msg):
                    return
            if any(isinstance(i, dict) and i.get("T") in ("t", "q", "b") for i in items):
                self.deliver(self.clock.now(), frame)
        raise HandshakeError(f"no {tag} {msg or ''} answer".strip())

    def _read(self, ws: websocket.WebSocket) -> str:
        """Hand frames on until the socket fails, the server closes, or `stop`."""
        ws.settimeout(READ_POLL_S)
        now = self.clock.now()
        last_ping = now
        ping_out: float | None = None
        deliver = self.deliver
        clock_now = self.clock.now
        while not self._stop.is_set():
            try:
                opcode, frame = ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                opcode, frame = None, None
            except (websocket.WebSocketException, OSError) as exc:
                return _one_line(exc) or type(exc).__name__
            now = clock_now()
            if opcode == websocket.ABNF.OPCODE_TEXT or opcode == websocket.ABNF.OPCODE_BINARY:
                deliver(now, frame.data)
                ping_out = None
            elif opcode == websocket.ABNF.OPCODE_PONG:
                deliver(now, None)
                ping_out = None
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                return "closed by the server"
            if ping_out is not None and now - ping_out >= self.cfg.ping_timeout_s:
                return f"no answer to a ping within {self.cfg.ping_timeout_s}s"
            if now - last_ping >= self.cfg.ping_every_s:
                try:
                    ws.ping()
                except (websocket.WebSocketException, OSError) as exc:
                    return _one_line(exc)
                last_ping = now
                if ping_out is None:
                    ping_out = now
        return "stopped"


def _close(ws: websocket.WebSocket | None) -> None:
    """Close quietly; returns None so `ws = _close(ws)` forgets the socket."""
    if ws is not None:
        try:
            ws.close(timeout=0.5)
        except Exception:
            pass
        try:  # after a server's close frame `close` returns early and leaves the socket open
            ws.shutdown()
        except Exception:
            pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
