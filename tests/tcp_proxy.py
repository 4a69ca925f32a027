"""A tiny TCP proxy a test can cut, freeze and restore, to take a real server "down" for one
test without touching the shared server (PostgreSQL, Redis) everyone else is using.

Two kinds of outage: `cut()` resets every connection and refuses new ones (a crashed
server); `freeze()` keeps every connection open but passes no byte either way and holds new
connections unanswered (a black hole: a dead switch, a hung server), which only a client
with its own timeouts survives. `restore()` ends either; bytes held by a freeze are then
delivered, as TCP would after a stall."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class TcpProxy:
    """Forwards 127.0.0.1:<port> to (host, port). `cut()` drops every connection and
    refuses new ones; `freeze()` stalls them all; `restore()` undoes either (listening
    again on the same port after a cut). `delay_s` holds every chunk that long before
    forwarding it (a slow server or link)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.delay_s = 0.0
        self.port = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self.restore()

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    def freeze(self) -> None:
        """Black hole: connections stay open, nothing passes, new ones hang."""
        self._flowing.clear()

    def restore(self) -> None:
        self._flowing.set()
        if self._listener is not None:
            return  # it was frozen, not cut: the held bytes flow again
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self._flowing.set()  # pipes held by a freeze wake up and find their sockets closed

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._flowing.wait()
            try:
                upstream = socket.create_connection(self.target, timeout=3)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                self._flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)  # the simulated latency itself, not a test wait
                self._flowing.wait()  # frozen meanwhile: hold the bytes until restored
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def proxied_dsn(dsn: str) -> tuple[TcpProxy, str]:
    """A proxy in front of the server of a PostgreSQL DSN, and the DSN through it."""
    import psycopg2.extensions

    params = psycopg2.extensions.parse_dsn(dsn)
    proxy = TcpProxy(params.get("host", "127.0.0.1"), int(params.get("port", "5432")))
    return proxy, psycopg2.extensions.make_dsn(dsn, host="127.0.0.1", port=proxy.port)
