"""Backend-neutral half of the store: validation, value conversion and SQL building.

Every table/column name that reaches SQL has been checked against the whitelist
derived from the migrations, and every value travels as a bound parameter, so no
caller-supplied text is ever interpolated into a statement.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from pydantic_core import to_json

from .errors import LedgerConflict, StoreError
from .schema import BOOTSTRAP_SQL, MIGRATIONS, TABLES, TableInfo, render_statements

Params = Sequence[Any]
Row = dict[str, Any]
# Runs one statement inside the migration transaction and returns raw result tuples.
MigrationRunner = Callable[[str, Params], list[tuple[Any, ...]]]

_SCALARS = (str, int, float)


def _table(name: str) -> TableInfo:
    info = TABLES.get(name) if isinstance(name, str) else None
    if info is None:
        raise ValueError(f"unknown table {name!r}")
    return info


def _column(info: TableInfo, name: str) -> str:
    if not isinstance(name, str) or name not in info.columns:
        raise ValueError(f"unknown column {name!r} for table {info.name!r}")
    return name


def _q(ident: str) -> str:
    """Quote an already-whitelisted identifier (protects names like ``key``/``new``)."""
    return f'"{ident}"'


def adapt_value(info: TableInfo, column: str, value: Any) -> Any:
    """Convert a Python value into something both drivers bind the same way."""
    if value is None:
        return None
    if column in info.bools:
        return bool(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict | list):
        return to_json(value).decode()  # compact JSON, ~5x faster than json.dumps
    raise TypeError(
        f"unsupported value type {type(value).__name__} for {info.name}.{column}; "
        "use str/int/float/bool/None/dict/list"
    )


def adapt_row(info: TableInfo, cols: list[str], row: dict[str, Any]) -> tuple[Any, ...]:
    """`adapt_value` over a row, with the common case (None, or a plain str, int or
    float in a non-boolean column) passed through without a call: a batch of decisions
    is thousands of values."""
    bools = info.bools
    out: list[Any] = []
    append = out.append
    for c in cols:
        v = row[c]
        t = type(v)
        if v is None or ((t is str or t is float or t is int) and c not in bools):
            append(v)
        elif (t is dict or t is list) and c not in bools:  # JSON columns, as adapt_value
            append(to_json(v).decode())
        else:
            append(adapt_value(info, c, v))
    return tuple(out)


class Database(ABC):
    """A durable store with a small dict-in/dict-out CRUD surface over one schema.

    Subclasses supply connection handling and error mapping; this class builds the
    SQL. All methods are thread-safe.
    """

    kind: str = ""
    _ph: str = "?"  # parameter placeholder of the driver
    _table_exists_sql: str = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._in_tx = False  # inside `transaction()`: no statement may silently reconnect
        # Statement text by shape (verb, table, columns, ...): built and its names checked
        # once, not for every row a ledger writes.
        self._sql: dict[tuple[Any, ...], str] = {}

    # ---- backend hooks -------------------------------------------------------------

    @abstractmethod
    def _execute(self, sql: str, params: Params, *, retry: bool) -> tuple[int, list[Row]]:
        """Run one autocommitted statement; ``retry`` marks it safe to replay once."""

    @abstractmethod
    def _migration_tx(self) -> AbstractContextManager[MigrationRunner]:
        """A single transaction holding a cross-process migration lock."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; later calls raise StoreUnavailable."""

    def _execute_many(self, sql: str, seq: Sequence[Params]) -> None:
        """Run one statement for many parameter rows (backends batch it)."""
        for params in seq:
            self._execute(sql, params, retry=False)

    def transaction(self, *, durable: bool = True) -> AbstractContextManager[None]:
        """Every write inside is one transaction: all applied or none. `durable=False`
        lets the commit skip the disk flush (a power cut may lose the last commits, a
        crash of the process does not); order rows are never written that way."""
        return nullcontext()

    # ---- schema --------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations atomically; returns the resulting version."""
        with self._migration_tx() as run:
            for stmt in render_statements(BOOTSTRAP_SQL, self.kind):
                run(stmt, ())
            applied = {int(r[0]) for r in run("SELECT version FROM schema_version", ())}
            insert_sql = (
                f"INSERT INTO schema_version (version, applied_at) VALUES ({self._ph}, {self._ph})"
            )
            for migration in sorted(MIGRATIONS, key=lambda m: m.version):
                if migration.version in applied:
                    continue
                for stmt in migration.statements(self.kind):
                    run(stmt, ())
                run(insert_sql, (migration.version, time.time()))
                applied.add(migration.version)
            return max(applied, default=0)

    def schema_version(self) -> int:
        """Highest applied migration, 0 for a fresh database."""
        _, rows = self._execute(self._table_exists_sql, ("schema_version",), retry=True)
        if not rows:
            return 0
        _, rows = self._execute("SELECT MAX(version) AS v FROM schema_version", (), retry=True)
        value = rows[0]["v"] if rows else None
        return int(value) if value is not None else 0

    # ---- CRUD ----------------------------------------------------------------------

    def insert(self, table: str, row: dict[str, Any], *, ignore_conflict: bool = False) -> bool:
        """Insert one row; with ``ignore_conflict`` a unique-key clash returns False."""
        info = _table(table)
        cols, values = self._assignments(info, row)
        key = ("insert", info.name, *cols, ignore_conflict)
        sql = self._sql.get(key)
        if sql is None:
            sql = (
                f"INSERT INTO {_q(info.name)} ({', '.join(map(_q, cols))}) "
                f"VALUES ({', '.join([self._ph] * len(cols))})"
            )
            if ignore_conflict:
                sql += " ON CONFLICT DO NOTHING"
            self._sql[key] = sql
        count, _ = self._execute(sql, values, retry=False)
        return count > 0

    def insert_once(
        self, table: str, row: dict[str, Any], key: str, compare: Sequence[str]
    ) -> bool:
        """Insert a row keyed by the unique column `key`: True when new, False when the same
        row (same `compare` columns) is already there; a different row raises LedgerConflict."""
        if self.insert(table, row, ignore_conflict=True):
            return True
        found = self.select(table, {key: row[key]}, limit=1)
        if not found:  # the clash was on another unique key: let the plain insert say which
            self.insert(table, row)
            return True
        old = found[0]
        differences = {
            c: (old.get(c), row.get(c)) for c in compare if not same_value(old.get(c), row.get(c))
        }
        if differences:
            raise LedgerConflict(table, key, str(row[key]), differences)
        return False

    def insert_many(
        self, table: str, rows: Sequence[dict[str, Any]], *, ignore_conflict: bool = False
    ) -> None:
        """Insert rows that share one set of columns, in one statement run many times."""
        if not rows:
            return
        info = _table(table)
        cols = [_column(info, c) for c in rows[0]]
        sql = (
            f"INSERT INTO {_q(info.name)} ({', '.join(map(_q, cols))}) "
            f"VALUES ({', '.join([self._ph] * len(cols))})"
        )
        if ignore_conflict:
            sql += " ON CONFLICT DO NOTHING"
        self._execute_many(sql, [adapt_row(info, cols, r) for r in rows])

    def upsert(
        self, table: str, row: dict[str, Any], key: tuple[str, ...], *, add: tuple[str, ...] = ()
    ) -> None:
        """Insert or overwrite the non-key columns given in ``row`` for that key; the
        columns in ``add`` are counters: an existing row's value grows by the one given."""
        info = _table(table)
        key_cols = tuple(_column(info, k) for k in key)
        if frozenset(key_cols) not in info.unique_keys:
            raise ValueError(f"{key_cols!r} is not a unique key of table {info.name!r}")
        missing = [k for k in key_cols if k not in row]
        if missing:
            raise ValueError(f"upsert row lacks key column(s) {missing}")
        cols, values = self._assignments(info, row)
        added = tuple(_column(info, c) for c in add)
        shape = ("upsert", info.name, key_cols, added, *cols)
        sql = self._sql.get(shape)
        if sql is None:
            updates = [
                f"{_q(c)} = COALESCE({_q(info.name)}.{_q(c)}, 0) + excluded.{_q(c)}"
                if c in added
                else f"{_q(c)} = excluded.{_q(c)}"
                for c in cols
                if c not in key_cols
            ]
            action = "DO UPDATE SET " + ", ".join(updates) if updates else "DO NOTHING"
            sql = self._sql[shape] = (
                f"INSERT INTO {_q(info.name)} ({', '.join(map(_q, cols))}) "
                f"VALUES ({', '.join([self._ph] * len(cols))}) "
                f"ON CONFLICT ({', '.join(map(_q, key_cols))}) {action}"
            )
        self._execute(sql, values, retry=False)

    def update(self, table: str, where: dict[str, Any], changes: dict[str, Any]) -> int:
        """Set ``changes`` on rows matching ``where`` (must be non-empty); returns rows changed."""
        info = _table(table)
        if not where:
            raise ValueError("update requires a non-empty where clause")
        cols, values = self._assignments(info, changes)
        clause, params = self._where(info, where)
        shape = ("update", info.name, clause, *cols)
        sql = self._sql.get(shape)
        if sql is None:
            sets = ", ".join(f"{_q(c)} = {self._ph}" for c in cols)
            sql = self._sql[shape] = f"UPDATE {_q(info.name)} SET {sets}{clause}"
        count, _ = self._execute(sql, [*values, *params], retry=False)
        return count

    def delete(self, table: str, where: dict[str, Any]) -> int:
        """Delete rows matching ``where`` (must be non-empty); returns rows deleted."""
        info = _table(table)
        if not where:
            raise ValueError("delete requires a non-empty where clause")
        clause, params = self._where(info, where)
        count, _ = self._execute(f"DELETE FROM {_q(info.name)}{clause}", params, retry=False)
        return count

    def select(
        self,
        table: str,
        where: dict[str, Any] | None = None,
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows as dicts; JSON columns come back as text, booleans as ``bool``."""
        info = _table(table)
        clause, params = self._where(info, where)
        sql = f"SELECT * FROM {_q(info.name)}{clause}{self._order_by(info, order_by)}"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"limit must be a non-negative int, got {limit!r}")
            sql += f" LIMIT {int(limit)}"
        _, rows = self._execute(sql, params, retry=True)
        if info.bools:
            for row in rows:
                for col in info.bools:
                    if row.get(col) is not None:
                        row[col] = bool(row[col])
        return rows

    def select_between(
        self, table: str, column: str, lo: float, hi: float, *, order_by: str | None = None
    ) -> list[dict[str, Any]]:
        """Rows with ``lo <= column < hi`` (a day of decisions, not the whole history)."""
        info = _table(table)
        col = _q(_column(info, column))
        sql = (
            f"SELECT * FROM {_q(info.name)} WHERE {col} >= {self._ph} AND {col} < {self._ph}"
            f"{self._order_by(info, order_by)}"
        )
        _, rows = self._execute(sql, [lo, hi], retry=True)
        for row in rows:
            for c in info.bools:
                if row.get(c) is not None:
                    row[c] = bool(row[c])
        return rows

    def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        """Number of rows matching ``where``."""
        info = _table(table)
        clause, params = self._where(info, where)
        _, rows = self._execute(
            f"SELECT COUNT(*) AS n FROM {_q(info.name)}{clause}", params, retry=True
        )
        return int(rows[0]["n"])

    def ping(self) -> bool:
        """True when a trivial query succeeds (reconnecting if needed); never raises."""
        try:
            self._execute("SELECT 1 AS ok", (), retry=True)
        except StoreError:
            return False
        return True

    # ---- helpers -------------------------------------------------------------------

    def _assignments(self, info: TableInfo, row: dict[str, Any]) -> tuple[list[str], list[Any]]:
        if not row:
            raise ValueError(f"no columns given for table {info.name!r}")
        cols = list(row)
        if ("columns", info.name, *cols) not in self._sql:  # each shape's names checked once
            for c in cols:
                _column(info, c)
            self._sql["columns", info.name, *cols] = ""
        return cols, [adapt_value(info, c, row[c]) for c in cols]

    def _where(self, info: TableInfo, where: dict[str, Any] | None) -> tuple[str, list[Any]]:
        """Equality conjunction; None means IS NULL, a tuple/list/set means IN (...)."""
        if not where:
            return "", []
        parts: list[str] = []
        params: list[Any] = []
        for col, value in where.items():
            name = _q(_column(info, col))
            if value is None:
                parts.append(f"{name} IS NULL")
            elif isinstance(value, tuple | list | set | frozenset):
                items = [adapt_value(info, col, v) for v in value]
                if not items:
                    parts.append("1 = 0")
                else:
                    parts.append(f"{name} IN ({', '.join([self._ph] * len(items))})")
                    params.extend(items)
            else:
                parts.append(f"{name} = {self._ph}")
                params.append(adapt_value(info, col, value))
        return " WHERE " + " AND ".join(parts), params

    @staticmethod
    def _order_by(info: TableInfo, order_by: str | None) -> str:
        """``"col"``, ``"col DESC"``, ``"-col"`` or a comma-separated list of those."""
        if not order_by:
            return ""
        terms: list[str] = []
        for raw in order_by.split(","):
            words = raw.split()
            if not words or len(words) > 2:
                raise ValueError(f"bad order_by term {raw!r}")
            col, direction = words[0], (words[1].upper() if len(words) == 2 else "ASC")
            if col.startswith("-") and len(words) == 1:
                col, direction = col[1:], "DESC"
            if direction not in ("ASC", "DESC"):
                raise ValueError(f"bad order_by direction {words[1]!r}")
            terms.append(f"{_q(_column(info, col))} {direction}")
        return " ORDER BY " + ", ".join(terms)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def same_value(a: Any, b: Any) -> bool:
    """Equal as the ledger stores them: numbers within float noise, enums by value."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if a is None or b is None:
        return a is b
    return str(a) == str(b)


def rows_from_cursor(description: Any, fetched: Iterator[Sequence[Any]] | list[Any]) -> list[Row]:
    """Turn DB-API result tuples into dicts keyed by column name."""
    names = [d[0] for d in description]
    return [dict(zip(names, r, strict=True)) for r in fetched]
