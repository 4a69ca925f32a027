"""PostgreSQL backend: one autocommit psycopg2 connection, rebuilt after it breaks.

A dead connection surfaces as StoreUnavailable on writes (replaying a write whose
outcome is unknown could duplicate it) while reads reconnect and retry once. The
next call after any failure opens a fresh connection.

The connection is psycopg2's asynchronous kind, driven here with a deadline on every
wait: a server that stops answering (a black hole: the socket stays open, nothing comes
back, keepalives are still acknowledged on the way) is an outage after `io_timeout_s`,
instead of a store actor blocked for good (issue 11: exits must not wait on it).
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg2
import psycopg2.extensions

from .base import Database, MigrationRunner, Params, Row, rows_from_cursor
from .errors import StoreError, StoreIntegrityError, StoreUnavailable

# pg_advisory_xact_lock key shared by every AEGIS process migrating the same database.
MIGRATION_LOCK_KEY = 0x41454749_53000001  # "AEGIS" + 1
MIGRATION_WAIT_S = 60.0

_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


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
    ) -> None:
        super().__init__()
        self.dsn = dsn
        self.connect_timeout = float(connect_timeout)
        # A statement the server is working on may take up to its statement_timeout; past
        # that plus a margin, silence means the server (or the path to it) is gone.
        self.io_timeout = max(io_timeout_s, 0.001)
        self._connect_kwargs: dict[str, Any] = {
            "async_": True,
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
            conn = None
            try:
                conn = psycopg2.connect(self.dsn, **self._connect_kwargs)
                self._wait(conn, self.connect_timeout)  # async: autocommit by nature
            except (psycopg2.Error, TimeoutError) as exc:
                if conn is not None:
                    with suppress(psycopg2.Error):
                        conn.close()
                raise StoreUnavailable(
                    f"cannot connect to {redact_dsn(self.dsn)}: {str(exc).strip()}"
                ) from exc
            self._conn = conn
        return self._conn

    @staticmethod
    def _wait(conn: psycopg2.extensions.connection, timeout: float) -> None:
        """Drive an asynchronous connection until its operation is done, or raise
        TimeoutError when nothing has moved it to the end within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state = conn.poll()
            if state == psycopg2.extensions.POLL_OK:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from the server within {timeout:g}s")
            fd = conn.fileno()
            if state == psycopg2.extensions.POLL_READ:
                select.select([fd], [], [], left)
            elif state == psycopg2.extensions.POLL_WRITE:
                select.select([], [fd], [], left)
            else:  # pragma: no cover - psycopg2 documents no other state
                raise psycopg2.OperationalError(f"bad poll state {state}")

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
        attempts = 2 if retry else 1
        with self._lock:
            for attempt in range(attempts):
                conn = self._ensure()
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql, tuple(params) if params else None)
                        self._wait(conn, self.io_timeout)
                        rows = (
                            rows_from_cursor(cur.description, cur.fetchall())
                            if cur.description
                            else []
                        )
                        return cur.rowcount, rows
                except TimeoutError as exc:
                    self._drop()  # the statement's fate is unknown: never reuse that link
                    silent = StoreUnavailable(f"postgres unavailable: {exc}")
                    if attempt + 1 < attempts:
                        continue
                    raise silent from exc
                except psycopg2.Error as exc:
                    error = self._translate(exc)
                    if isinstance(error, StoreUnavailable) and attempt + 1 < attempts:
                        continue  # read-only statement: safe to replay on a new connection
                    raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _migration_tx(self) -> Iterator[MigrationRunner]:
        with self._lock:
            conn = self._ensure()
            try:
                with conn.cursor() as cur:
                    # Other processes may be migrating: waiting on their lock is not silence.
                    timeout = max(self.io_timeout, MIGRATION_WAIT_S)

                    def run(sql: str, params: Params) -> list[tuple[Any, ...]]:
                        cur.execute(sql, tuple(params) if params else None)
                        self._wait(conn, timeout)
                        return list(cur.fetchall()) if cur.description else []

                    run("BEGIN", ())
                    try:
                        # Held until COMMIT/ROLLBACK: concurrent migrators queue here.
                        run("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                        yield run
                        run("COMMIT", ())
                    except BaseException:
                        if not conn.closed:
                            try:
                                run("ROLLBACK", ())
                            except (psycopg2.Error, TimeoutError):
                                self._drop()
                        raise
            except TimeoutError as exc:
                self._drop()
                raise StoreUnavailable(f"postgres unavailable: {exc}") from exc
            except psycopg2.Error as exc:
                raise self._translate(exc) from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
