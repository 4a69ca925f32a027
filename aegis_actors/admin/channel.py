"""Redis plumbing for the admin channel: a subscriber thread and bounded publisher threads.

Neither ever blocks an actor's mailbox: the subscriber hands each raw message to a
callback (cheap checks, then a tell), and publishers drain a bounded queue, dropping
(and counting) the oldest when Redis cannot keep up, so a flood cannot grow memory.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
import redis
from loguru import logger

log = logger.bind(actor="admin")

RECONNECT_MAX_S = 5.0
IDLE_S = 0.2  # no message this long: the idle callback runs (log summaries)
READ_BYTES = 1 << 20  # one socket read; a flood arrives in big chunks
MIN_RUN = 32  # copies of one message in a read that make it worth cutting them out in C


def connect(url: str, name: str | None = None, *, single: bool = False) -> redis.Redis:
    """A client; `name` shows in CLIENT LIST, so an operator can tell the admin apart.
    `single`: one connection kept for one thread (no pool checkout per command)."""
    clean = re.sub(r"[^A-Za-z0-9:._-]", "_", name) if name else None
    return redis.Redis.from_url(
        url,
        socket_timeout=5.0,
        socket_connect_timeout=3.0,
        client_name=clean,
        single_connection_client=single,
    )


def _frame(channel: bytes, data: bytes) -> bytes:
    """The bytes Redis sends for one pub/sub message (RESP2)."""
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(data),
        data,
    )


class Subscriber:
    """Listens on one channel, reading the connection's socket directly (hiredis parses
    the RESP stream in C), so a junk flood is refused about as fast as one Redis
    connection can deliver it. When Redis drops the connection (e.g. at the pub/sub
    output buffer limit under a flood) it says so, reconnects and subscribes again."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_message: Callable[[bytes], None],
        on_error: Callable[[str], None],
        on_idle: Callable[[], None] | None = None,
        on_repeat: Callable[[int], None] | None = None,
        on_not_object: Callable[[int], None] | None = None,
    ) -> None:
        self.url, self.channel = url, channel
        self.on_message, self.on_error, self.on_idle = on_message, on_error, on_idle
        self.on_repeat = on_repeat  # n more copies of the message just handled
        # n messages whose first byte is not `{` (no request can be): refused in bulk
        self.on_not_object = on_not_object
        self.subscribed = threading.Event()
        self.reconnects = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aegis-admin-sub", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
            except (OSError, redis.RedisError, hiredis.ProtocolError) as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.on_error(why)
            finally:
                if self.subscribed.is_set():  # it was working: try again at once
                    delay = 0.1
                self.subscribed.clear()
            if self._stop.is_set():
                return
            self.reconnects += 1
            log.warning(
                "admin: subscriber connection to Redis lost ({} messages read so far); "
                "reconnecting in {:.1f} s",
                self.received,
                delay,
            )
            self._stop.wait(delay)  # a background thread: this blocks no actor
            delay = min(delay * 2, RECONNECT_MAX_S)

    @staticmethod
    def _handle(callback: Callable[[Any], object], arg: Any) -> None:
        try:
            callback(arg)
        except Exception:  # one bad message never ends the listener
            log.opt(exception=True).error("admin: handling a message failed")

    def _listen(self) -> None:
        """Subscribe and read until the connection ends (returns) or fails (raises)."""
        client = redis.Redis.from_url(
            self.url,
            socket_timeout=5.0,
            socket_connect_timeout=3.0,
            client_name=re.sub(r"[^A-Za-z0-9:._-]", "_", f"aegis-admin-sub:{self.channel}"),
            protocol=2,
        )
        conn: Any = client.connection_pool.make_connection()
        try:
            conn.connect()  # AUTH, TLS, SETNAME, SELECT as the URL says
            conn.send_command("SUBSCRIBE", self.channel)
            sock = conn._sock  # read directly: redis-py's per-message path is too slow
            sock.settimeout(IDLE_S)
            reader = hiredis.Reader()
            gets = reader.gets
            buf = bytearray(READ_BYTES)
            on_message, on_not_object = self.on_message, self.on_not_object
            on_repeat = self.on_repeat or (lambda k: [on_message(last) for _ in range(k)])
            last: Any = None
            frame: bytes = b""  # the RESP frame of `last`, once it repeats
            while not self._stop.is_set():
                try:
                    n = sock.recv_into(buf)
                except TimeoutError:
                    if self.on_idle is not None:
                        self.on_idle()
                    continue
                if n == 0:
                    raise ConnectionError("Redis closed the connection")
                got = repeats = junk = 0
                pieces: list[Any] = [memoryview(buf)[:n]]
                if frame and (copies := buf.count(frame, 0, n)) >= MIN_RUN:
                    # A flood of one message: cut its copies out in C, parse what is left
                    # (other messages, and partial frames at the edges) as usual.
                    pieces = bytes(buf[:n]).split(frame)
                    got = repeats = copies
                for piece in pieces:
                    if not piece:
                        continue
                    reader.feed(piece)
                    while (m := gets()) is not False:
                        if m[0] == b"message":  # the hot loop: as little Python as can be
                            got += 1
                            data = m[2]
                            if data[:1] != b"{" and on_not_object is not None:
                                junk += 1
                                continue
                            if data == last:  # the same again: counted, handled in one call
                                repeats += 1
                                if not frame:
                                    frame = _frame(m[1], data)
                                continue
                            if repeats:
                                self._handle(on_repeat, repeats)
                                repeats = 0
                            if junk and on_not_object is not None:  # counted before it
                                self._handle(on_not_object, junk)
                                junk = 0
                            last, frame = data, b""
                            self._handle(on_message, data)
                        elif isinstance(m, hiredis.ReplyError):
                            raise redis.ResponseError(str(m))
                        elif m[0] == b"subscribe":
                            self.subscribed.set()
                            log.info("admin listening on {}", self.channel)
                if repeats:
                    self._handle(on_repeat, repeats)
                if junk and on_not_object is not None:
                    self._handle(on_not_object, junk)
                self.received += got
        finally:
            for closing in (conn, client):
                try:
                    closing.disconnect() if closing is conn else closing.close()
                except Exception:
                    pass


class Publisher:
    """Publishes queued (channel, text) pairs on its own thread; bounded, drops counted."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        limit: int = 1000,
        on_drop: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.on_drop, self.on_error = on_drop, on_error
        self._queue: deque[tuple[str, str]] = deque()
        self._limit = limit
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"aegis-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, channel: str, text: str) -> None:
        with self._cv:
            if len(self._queue) >= self._limit:
                self._queue.popleft()
                if self.on_drop is not None:
                    self.on_drop()
            self._queue.append((channel, text))
            self._cv.notify()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish what is queued (within `timeout`), then end the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            try:
                pipe = self.client.pipeline(transaction=False)
                for channel, text in batch:
                    pipe.publish(channel, text)
                pipe.execute()
            except redis.RedisError as exc:
                if self.on_error is not None:
                    self.on_error(f"{type(exc).__name__}: {exc}")
