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

import redis
from loguru import logger

log = logger.bind(actor="admin")

RECONNECT_MAX_S = 5.0


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


class Subscriber:
    """Listens on one channel and reconnects (with backoff) until stopped."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_message: Callable[[bytes | str], None],
        on_error: Callable[[str], None],
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.url, self.channel = url, channel
        self.on_message, self.on_error, self.on_idle = on_message, on_error, on_idle
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aegis-admin-sub", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        """One pubsub for the thread's life: redis-py reconnects it and subscribes again.

        Tearing it down on an error would drop what its fresh connection already holds.
        """
        client = connect(self.url, f"aegis-admin-sub:{self.channel}")
        pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
        delay, subscribed = 0.1, False
        try:
            while not self._stop.is_set():
                try:
                    if not subscribed:
                        pubsub.subscribe(self.channel)
                        subscribed = True
                        log.info("admin listening on {}", self.channel)
                    m = pubsub.get_message(timeout=0.2)
                    self.subscribed.set()
                    delay = 0.1
                    if m is not None and m.get("type") == "message":
                        self.deliver(m["data"])
                    elif m is None and self.on_idle is not None:
                        self.on_idle()
                except redis.RedisError as exc:
                    self.subscribed.clear()
                    self.on_error(f"{type(exc).__name__}: {exc}")
                    self._stop.wait(delay)  # a background thread: this blocks no actor
                    delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self.subscribed.clear()
            for closing in (pubsub, client):
                try:
                    closing.close()
                except Exception:
                    pass

    def deliver(self, data: Any) -> None:
        try:
            self.on_message(data if isinstance(data, bytes | str) else bytes(data))
        except Exception:  # one bad message never ends the listener
            log.exception("admin: handling a message failed")


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
