"""SQLite backend: one WAL-mode connection shared across threads behind a lock.

Used for local runs and tests; every call autocommits so a crash never leaves a
half-applied write, and ``BEGIN IMMEDIATE`` serialises migrations across processes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from itertools import chain
from pathlib import Path
from typing import Any

from .base import Database, MigrationRunner, Params, Row, rows_from_cursor
from .errors import StoreError, StoreIntegrityError, StoreUnavailable

# Primary result codes meaning "the file/lock is the problem, not the statement".
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED: retry later, connection is fine
_BROKEN = {8, 10, 11, 13, 14, 15, 26}  # READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB
_UNAVAILABLE_TEXT = ("database is locked", "disk i/o", "unable to open", "disk is full")
# Rows per multi-row INSERT in a transaction: a power of two (the rest of a batch goes in
# halving chunks: a handful of statements per table, each prepared once and cached).
ROWS_PER_INSERT = 64


class SQLiteDatabase(Database):
    """File-backed store; parent directories are created on demand."""

    kind = "sqlite"
    _ph = "?"
    _table_exists_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def __init__(
        self, path: str, *, timeout: float = 5.0, synchronous: str = "full", commit_every: int = 1
    ) -> None:
        super().__init__()
        self.path = path
        if synchronous not in ("full", "normal"):
            raise ValueError(f"sqlite synchronous {synchronous!r}: 'full' or 'normal'")
        if isinstance(commit_every, bool) or not isinstance(commit_every, int) or commit_every < 1:
            raise ValueError(f"sqlite commit_every {commit_every!r}: an int >= 1")
        self.synchronous = synchronous.upper()  # durable commits' fsync policy
        # A replay's ledger (an output a rerun makes again) may group its transactions:
        # each is a savepoint of one open transaction, committed every `commit_every`
        # of them and at `commit()`/`close()`. 1 (a live run): each commits on its own.
        self.commit_every = commit_every
        self._grouped = 0  # transactions released into the open group, not yet committed
        self._timeout = timeout
        self._conn: sqlite3.Connection | None = None
        if path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"SQLiteDatabase({self.path!r})"

    # ---- connection ----------------------------------------------------------------

    def _ensure(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable("database is closed")
        if self._conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._timeout,
                    isolation_level=None,  # autocommit; transactions are explicit
                    check_same_thread=False,  # guarded by self._lock instead
                    uri=self.path.startswith("file:"),
                )
                self._enable_wal(conn)
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                if self.commit_every > 1:  # savepoints' journal in memory, not a temp file
                    conn.execute("PRAGMA temp_store=MEMORY")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open sqlite {self.path!r}: {exc}") from exc
            self._conn = conn
        return self._conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, retrying: the switch returns SQLITE_BUSY without waiting
        for the busy timeout when another connection is using a fresh file."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                    conn.close()
                    raise
                time.sleep(0.02)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._grouped = 0
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreIntegrityError(str(exc))
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc).lower()
        if code in _BUSY or "locked" in text:
            return StoreUnavailable(f"sqlite busy: {exc}")
        if code in _BROKEN or any(t in text for t in _UNAVAILABLE_TEXT) or "closed" in text:
            lost = self._grouped
            self._drop()  # reopen on the next call
            if lost:  # a replay's open group: said, never silently dropped
                return StoreUnavailable(
                    f"sqlite unavailable: {exc} ({lost} grouped transactions not committed)"
                )
            return StoreUnavailable(f"sqlite unavailable: {exc}")
        return StoreError(f"sqlite error: {exc}")

    # ---- Database hooks ------------------------------------------------------------

    def _execute(self, sql: str, params: Params, *, retry: bool) -> tuple[int, list[Row]]:
        with self._lock:
            conn = self._ensure()
            try:
                cur = conn.execute(sql, tuple(params))
                rows = rows_from_cursor(cur.description, cur.fetchall()) if cur.description else []
                return cur.rowcount, rows
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    _counts_many = True

    def _execute_many(self, sql: str, seq: Any) -> int:
        with self._lock:
            conn = self._ensure()
            try:
                cur = conn.executemany(sql, [p if type(p) is tuple else tuple(p) for p in seq])
                return int(cur.rowcount)
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def _insert_rows(self, head: str, tail: str, rows: list[tuple[Any, ...]]) -> int:
        """Inside a transaction, rows go ROWS_PER_INSERT to a statement (`INSERT .. VALUES
        (..), (..)`): the same rows, ids and count as one statement a row, ~20% less
        SQLite work (one statement's start and end, and one AUTOINCREMENT update, for many
        rows). Outside one, a row each as ever: each row commits on its own, so a failing
        row leaves the rows before it written, as it always did."""
        one = f"({', '.join(['?'] * len(rows[0]))})"
        with self._lock:
            conn = self._ensure()
            if len(rows) < 2 or not conn.in_transaction:
                return self._execute_many(f"{head}VALUES {one}{tail}", rows)
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0])
            size = ROWS_PER_INSERT
            while size > 1 and size > limit:
                size //= 2
            done, i = 0, 0
            try:
                while i < len(rows):
                    while size > len(rows) - i:
                        size //= 2
                    key = ("values", head, tail, size)
                    sql = self._sql.get(key)
                    if sql is None:
                        sql = self._sql[key] = f"{head}VALUES {', '.join([one] * size)}{tail}"
                    chunk = rows[i] if size == 1 else list(chain.from_iterable(rows[i : i + size]))
                    done += conn.execute(sql, chunk).rowcount
                    i += size
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            return done

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """BEGIN..COMMIT; a non-durable one commits with synchronous=NORMAL (WAL: safe
        against a crash of the process, may lose the last commits on a power cut), and
        every statement outside one (orders' write-ahead) keeps `synchronous` (FULL unless
        a replay asked for NORMAL). With `commit_every` > 1 (a replay) it is a savepoint
        of the open group instead: all applied or none as ever, committed with the group."""
        if self.commit_every > 1:
            with self._grouped_tx():
                yield
            return
        with self._lock:
            conn = self._ensure()
            switch = not durable and self.synchronous != "NORMAL"
            begin = ["PRAGMA synchronous=NORMAL", "BEGIN"] if switch else ["BEGIN"]
            try:
                with self._statements(conn, begin, "COMMIT", ["ROLLBACK"]):
                    yield
            finally:
                if switch and self._conn is conn:
                    with suppress(sqlite3.Error):
                        conn.execute(f"PRAGMA synchronous={self.synchronous}")

    @contextmanager
    def _statements(
        self, conn: sqlite3.Connection, begin: list[str], end: str, undo: list[str]
    ) -> Iterator[None]:
        """The block between `begin` and `end`; on an error `undo` (while a transaction is
        open), and a database error raised as the store's own."""
        try:
            for sql in begin:
                conn.execute(sql)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        self._in_tx = True
        try:
            yield
            conn.execute(end)
        except BaseException as exc:
            with suppress(sqlite3.Error):
                if conn.in_transaction:
                    for sql in undo:
                        conn.execute(sql)
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            raise
        finally:
            self._in_tx = False

    @contextmanager
    def _grouped_tx(self) -> Iterator[None]:
        """One transaction of a group: a savepoint (rolled back alone on an error) inside
        the group's open transaction, which commits once `commit_every` were released."""
        with self._lock:
            conn = self._ensure()
            begin = ["SAVEPOINT tx"] if conn.in_transaction else ["BEGIN", "SAVEPOINT tx"]
            with self._statements(conn, begin, "RELEASE tx", ["ROLLBACK TO tx", "RELEASE tx"]):
                yield
            self._grouped += 1
            if self._grouped >= self.commit_every:
                self.commit()

    @contextmanager
    def group(self) -> Iterator[None]:
        """With `commit_every` > 1 the statements inside join the open group (each is
        atomic on its own: a failing one is undone alone, as in autocommit) and count as
        one of its transactions; else each commits as it runs."""
        if self.commit_every == 1:
            yield
            return
        with self._lock:
            conn = self._ensure()
            try:
                if not conn.in_transaction:
                    conn.execute("BEGIN")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            yield
            self._grouped += 1
            if self._grouped >= self.commit_every:
                self.commit()

    def commit(self) -> None:
        """Commit the open group of transactions (`commit_every` > 1), if any."""
        with self._lock:
            conn = self._conn
            if conn is None or not conn.in_transaction or self._in_tx:
                return
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            finally:
                self._grouped = 0

    @contextmanager
    def _migration_tx(self) -> Iterator[MigrationRunner]:
        with self._lock:
            conn = self._ensure()

            def run(sql: str, params: Params) -> list[tuple[Any, ...]]:
                return list(conn.execute(sql, tuple(params)).fetchall())

            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield run
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def close(self) -> None:
        """Commit what a group holds, then release the connection."""
        with self._lock:
            try:
                if not self._closed:
                    self.commit()
            finally:
                self._closed = True
                self._drop()
