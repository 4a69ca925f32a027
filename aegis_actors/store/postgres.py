"""PostgreSQL backend: one autocommit psycopg2 connection, rebuilt after it breaks.

A dead connection surfaces as StoreUnavailable on writes (replaying a write whose
outcome is unknown could duplicate it) while reads reconnect and retry once. The
next call after any failure opens a fresh connection.

Every wait on the server has a deadline: psycopg2 waits through a callback
(`psycopg2.extensions.set_wait_callback`, so the API stays synchronous), and for this
store's connections the callback gives up after `io_timeout_s` of silence (connecting:
`connect_timeout`). A server that stops answering (a black hole: the socket stays open,
nothing comes back) is then an outage, not a store actor blocked for good (issue 11:
exits must not wait on it). Other psycopg2 connections in the process wait as before.
"""

from __future__ import annotations

import re
import select
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from .base import Database, MigrationRunner, Params, Row, rows_from_cursor
from .errors import StoreError, StoreIntegrityError, StoreUnavailable

# pg_advisory_xact_lock key shared by every AEGIS process migrating the same database.
MIGRATION_LOCK_KEY = 0x41454749_53000001  # "AEGIS" + 1
MIGRATION_WAIT_S = 60.0

_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)

# Deadlines by connection (this store's only), and for a connect in progress by thread.
_IO_TIMEOUTS: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_CONNECTING = threading.local()
# The run's stopping flag by connection: a stop cuts a silent wait short.
_STOP_EVENTS: weakref.WeakKeyDictionary[Any, threading.Event] = weakref.WeakKeyDictionary()
STOP_WAIT_S = 1.0
STOP_POLL_S = 0.1


class ServerSilent(psycopg2.OperationalError):
    """No answer from the server within the deadline: the link is treated as broken."""


def _wait(conn: Any) -> None:
    """psycopg2's wait callback: `select` on the socket, with this store's deadline. Once
    the run is stopping, a silent server gets `STOP_WAIT_S` at most, so the store stops
    within its shutdown timeout instead of waiting out `io_timeout_s` on a frozen link."""
    timeout = _IO_TIMEOUTS.get(conn, getattr(_CONNECTING, "timeout", None))
    stopping = _STOP_EVENTS.get(conn, getattr(_CONNECTING, "stopping", None))
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if stopping is not None and stopping.is_set():
            cap = started + STOP_WAIT_S
            deadline = cap if deadline is None else min(deadline, cap)
        left = None if deadline is None else deadline - time.monotonic()
        if deadline is not None and left is not None and left <= 0:
            raise ServerSilent(f"no answer from the server within {deadline - started:.3g}s")
        if stopping is not None:  # look at the stop now and then
            left = STOP_POLL_S if left is None else min(left, STOP_POLL_S)
        fd = conn.fileno()
        if state == psycopg2.extensions.POLL_READ:
            select.select([fd], [], [], left)
        elif state == psycopg2.extensions.POLL_WRITE:
            select.select([], [fd], [], left)
        else:  # pragma: no cover - psycopg2 documents no other state
            raise psycopg2.OperationalError(f"bad poll state {state}")


psycopg2.extensions.set_wait_callback(_wait)


def redact_dsn(dsn: str) -> str:
    """Hide passwords so the DSN can appear in logs and reprs."""
    dsn = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn, flags=re.IGNORECASE)


class PostgresDatabase(Database):
    """Store on a PostgreSQL server reachable through ``dsn`` (URI or key=value)."""

    kind = "postgres"
    _ph = "%s"
    _table_exists_sql = (
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = %s"
    )

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: int = 5,
        statement_timeout_ms: int = 30_000,
        application_name: str = "aegis-store",
        io_timeout_s: float = 10.0,
        stopping: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.stopping = stopping
        self.dsn = dsn
        self.connect_timeout = float(connect_timeout)
        self.io_timeout = max(io_timeout_s, 0.001)
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "application_name": application_name,
            "options": f"-c statement_timeout={int(statement_timeout_ms)}",
            # Detect silently dropped peers instead of hanging on a dead socket.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        self._conn: psycopg2.extensions.connection | None = None

    def __repr__(self) -> str:
        return f"PostgresDatabase({redact_dsn(self.dsn)!r})"

    # ---- connection ----------------------------------------------------------------

    def _ensure(self) -> psycopg2.extensions.connection:
        if self._closed:
            raise StoreUnavailable("database is closed")
        if self._conn is not None and self._conn.closed:
            self._conn = None
        if self._conn is None:
            _CONNECTING.timeout = self.connect_timeout
            _CONNECTING.stopping = self.stopping
            try:
                conn = psycopg2.connect(self.dsn, **self._connect_kwargs)
                _IO_TIMEOUTS[conn] = self.io_timeout
                if self.stopping is not None:
                    _STOP_EVENTS[conn] = self.stopping
                conn.autocommit = True
            except psycopg2.Error as exc:
                raise StoreUnavailable(
                    f"cannot connect to {redact_dsn(self.dsn)}: {str(exc).strip()}"
                ) from exc
            finally:
                _CONNECTING.timeout = None
                _CONNECTING.stopping = None
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg2.Error):
                conn.close()

    def _translate(self, exc: psycopg2.Error) -> StoreError:
        if isinstance(exc, _CONNECTION_ERRORS):
            self._drop()  # reconnect on the next call
            return StoreUnavailable(f"postgres unavailable: {str(exc).strip()}")
        if isinstance(exc, psycopg2.IntegrityError):
            return StoreIntegrityError(str(exc).strip())
        return StoreError(f"postgres error: {str(exc).strip()}")

    # ---- Database hooks ------------------------------------------------------------

    def _execute(self, sql: str, params: Params, *, retry: bool) -> tuple[int, list[Row]]:
        attempts = 2 if retry and not self._in_tx else 1
        with self._lock:
            for attempt in range(attempts):
                conn = self._ensure()
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql, tuple(params) if params else None)
                        rows = (
                            rows_from_cursor(cur.description, cur.fetchall())
                            if cur.description
                            else []
                        )
                        return cur.rowcount, rows
                except psycopg2.Error as exc:
                    error = self._translate(exc)
                    if isinstance(error, StoreUnavailable) and attempt + 1 < attempts:
                        continue  # read-only statement: safe to replay on a new connection
                    raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _execute_many(self, sql: str, seq: Any) -> int:
        with self._lock:
            conn = self._ensure()
            try:
                with conn.cursor() as cur:
                    psycopg2.extras.execute_batch(cur, sql, [tuple(p) for p in seq])
            except psycopg2.Error as exc:
                raise self._translate(exc) from exc
        return -1  # execute_batch does not count the rows

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """BEGIN..COMMIT on the autocommit connection; a non-durable one commits without
        waiting for the WAL flush (synchronous_commit off: a server crash may lose the
        last commits, never half of one)."""
        with self._lock:
            conn = self._ensure()
            try:
                with conn.cursor() as cur:
                    cur.execute("BEGIN")
                    if not durable:
                        cur.execute("SET LOCAL synchronous_commit TO OFF")
            except psycopg2.Error as exc:
                raise self._translate(exc) from exc
            self._in_tx = True
            try:
                yield
                with conn.cursor() as cur:
                    cur.execute("COMMIT")
            except BaseException as exc:
                if not conn.closed:
                    try:
                        with conn.cursor() as cur:
                            cur.execute("ROLLBACK")
                    except psycopg2.Error:
                        self._drop()
                if isinstance(exc, psycopg2.Error):
                    raise self._translate(exc) from exc
                raise
            finally:
                self._in_tx = False

    @contextmanager
    def _migration_tx(self) -> Iterator[MigrationRunner]:
        with self._lock:
            conn = self._ensure()
            # Other processes may be migrating: waiting on their lock is not silence.
            _IO_TIMEOUTS[conn] = max(self.io_timeout, MIGRATION_WAIT_S)
            try:
                with conn.cursor() as cur:

                    def run(sql: str, params: Params) -> list[tuple[Any, ...]]:
                        cur.execute(sql, tuple(params) if params else None)
                        return list(cur.fetchall()) if cur.description else []

                    cur.execute("BEGIN")
                    try:
                        # Held until COMMIT/ROLLBACK: concurrent migrators queue here.
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                        yield run
                        cur.execute("COMMIT")
                    except BaseException:
                        if not conn.closed:
                            try:
                                cur.execute("ROLLBACK")
                            except psycopg2.Error:
                                self._drop()
                        raise
            except psycopg2.Error as exc:
                raise self._translate(exc) from exc
            finally:
                if not conn.closed:
                    _IO_TIMEOUTS[conn] = self.io_timeout

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
