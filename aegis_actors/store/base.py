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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from operator import itemgetter
from typing import Any

from pydantic_core import to_json

from aegis_actors.messages import Msg, json_text, text_writer

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
    if isinstance(value, Msg):
        return json_text(value)  # the text of its JSON dump, as that dict would be written
    raise TypeError(
        f"unsupported value type {type(value).__name__} for {info.name}.{column}; "
        "use str/int/float/bool/None/dict/list or a message"
    )


# A row shape's plan: where the JSON values are, and which others `adapt_value` changes.
Plan = tuple[tuple[int, ...], tuple[tuple[int, Callable[[Any], Any]], ...]]
_NONE = type(None)


class RowAdapter:
    """`adapt_value` over rows with one set of columns, planned once per row shape (the
    type of each value): a batch of decisions is thousands of rows of a few shapes, so
    the type dispatch is one dict lookup a row, and only the values that change (JSON
    columns, odd types) are touched. Each value comes out as `adapt_value` makes it."""

    __slots__ = ("_info", "_cols", "_get", "_plans")
    MAX_PLANS = 256  # shapes kept per column set (a row of None/value mixes has a few)

    def __init__(self, info: TableInfo, cols: Sequence[str]) -> None:
        self._info = info
        self._cols = tuple(cols)
        get = itemgetter(*cols)
        self._get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = (
            get if len(cols) > 1 else lambda row: (get(row),)
        )
        self._plans: dict[tuple[type, ...], Plan] = {}

    def __call__(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        values = self._get(row)
        types = tuple(map(type, values))
        plan = self._plans.get(types) or self._plan(types)
        json_at, other = plan
        if not json_at and not other:
            return values
        out = list(values)
        for i in json_at:
            out[i] = to_json(out[i]).decode()  # compact JSON, ~5x faster than json.dumps
        for i, adapt in other:
            out[i] = adapt(out[i])
        return tuple(out)

    def _plan(self, types: tuple[type, ...]) -> Plan:
        """Which values `adapt_value` changes, for rows whose values have these types:
        None, and a str/int/float outside a boolean column, are bound as they are; a bool
        in a boolean column too (`bool(v)` is `v`); a dict or list is JSON text, and a
        message the JSON text of its JSON dump (`json_text`)."""
        info = self._info
        json_at: list[int] = []
        other: list[tuple[int, Callable[[Any], Any]]] = []
        for i, (col, t) in enumerate(zip(self._cols, types, strict=True)):
            if t is _NONE:
                continue
            if col in info.bools:
                if t is not bool:
                    other.append((i, partial(adapt_value, info, col)))
            elif t is str or t is int or t is float:
                continue
            elif t is dict or t is list:
                json_at.append(i)
            elif issubclass(t, Msg):  # a message (a decision record's answers)
                other.append((i, text_writer(t)))
            else:
                other.append((i, partial(adapt_value, info, col)))
        plan = (tuple(json_at), tuple(other))
        if len(self._plans) < self.MAX_PLANS:
            self._plans[types] = plan
        return plan


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
        self._adapters: dict[tuple[str, ...], RowAdapter] = {}  # by (table, *columns)

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

    # `_execute_many` answers how many rows it changed (else -1: insert_many_once then
    # inserts row by row).
    _counts_many = False

    def _execute_many(self, sql: str, seq: Sequence[Params]) -> int:
        """Run one statement for many parameter rows (backends batch it)."""
        return sum(self._execute(sql, params, retry=False)[0] for params in seq)

    def _insert_rows(self, head: str, tail: str, rows: list[tuple[Any, ...]]) -> int:
        """`head` VALUES (one row's placeholders) `tail`, for each row in order; how many
        were inserted (-1 when the backend does not count them)."""
        one = f"({', '.join([self._ph] * len(rows[0]))})"
        return self._execute_many(f"{head}VALUES {one}{tail}", rows)

    def transaction(self, *, durable: bool = True) -> AbstractContextManager[None]:
        """Every write inside is one transaction: all applied or none. `durable=False`
        lets the commit skip the disk flush (a power cut may lose the last commits, a
        crash of the process does not); order rows are never written that way."""
        return nullcontext()

    def group(self) -> AbstractContextManager[None]:
        """Statements each atomic on their own (an order's write-ahead): in a replay's
        grouped ledger they join the open group (no commit of their own), else each one
        commits as it runs."""
        return nullcontext()

    def commit(self) -> None:
        """Commit what grouped transactions hold (a replay's SQLite ledger); else nothing:
        every transaction commits on its own."""
        return None

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
    ) -> int:
        """Insert rows that share one set of columns in one bulk write (one statement run
        many times; SQLite, in a transaction: many rows a statement); how many were
        inserted (-1 when the backend does not count them)."""
        if not rows:
            return 0
        info = _table(table)
        cols = list(rows[0])
        same_columns(f"insert_many into {info.name!r}", rows, cols)
        shape = ("rows", info.name, *cols)
        head = self._sql.get(shape)
        if head is None:
            for c in cols:
                _column(info, c)
            head = self._sql[shape] = f"INSERT INTO {_q(info.name)} ({', '.join(map(_q, cols))}) "
        adapt = self._adapter(info, cols)
        tail = " ON CONFLICT DO NOTHING" if ignore_conflict else ""
        return self._insert_rows(head, tail, [adapt(r) for r in rows])

    def insert_many_once(
        self, table: str, rows: Sequence[dict[str, Any]], key: str, compare: Sequence[str]
    ) -> None:
        """`insert_once` for rows that share one set of columns: one executemany where the
        backend counts what it inserted; when some were not (a key already there), each
        row is checked as `insert_once` checks it: the same row is a no-op, a different
        one raises LedgerConflict, a clash on another unique key raises as ever."""
        if not rows:
            return
        if not self._counts_many:
            for row in rows:
                self.insert_once(table, row, key, compare)
            return
        if self.insert_many(table, rows, ignore_conflict=True) == len(rows):
            return
        for row in rows:
            found = self.select(table, {key: row[key]}, limit=1)
            if not found:  # not inserted, yet not there: let the plain insert say why
                self.insert(table, row)
                continue
            old = found[0]
            differences = {
                c: (old.get(c), row.get(c))
                for c in compare
                if not same_value(old.get(c), row.get(c))
            }
            if differences:
                raise LedgerConflict(table, key, str(row[key]), differences)

    def upsert(
        self, table: str, row: dict[str, Any], key: tuple[str, ...], *, add: tuple[str, ...] = ()
    ) -> None:
        """Insert or overwrite the non-key columns given in ``row`` for that key; the
        columns in ``add`` are counters: an existing row's value grows by the one given."""
        sql, values = self._upsert_sql(table, row, key, add)
        self._execute(sql, values, retry=False)

    def upsert_many(
        self,
        table: str,
        rows: Sequence[dict[str, Any]],
        key: tuple[str, ...],
        *,
        add: tuple[str, ...] = (),
    ) -> None:
        """`upsert` for rows that share one set of columns, in their order, in one
        statement run many times."""
        if not rows:
            return
        cols = list(rows[0])
        same_columns(f"upsert_many into {table!r}", rows, cols)
        sql, _ = self._upsert_sql(table, rows[0], key, add)
        adapt = self._adapter(_table(table), cols)
        self._execute_many(sql, [adapt(r) for r in rows])

    def _upsert_sql(
        self, table: str, row: dict[str, Any], key: tuple[str, ...], add: tuple[str, ...]
    ) -> tuple[str, list[Any]]:
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
        return sql, values

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
        values.extend(params)
        count, _ = self._execute(sql, values, retry=False)
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
        return cols, list(self._adapter(info, cols)(row))

    def _adapter(self, info: TableInfo, cols: list[str]) -> RowAdapter:
        """The row adapter of a table's column set, its names checked the first time."""
        key = (info.name, *cols)
        adapter = self._adapters.get(key)
        if adapter is None:
            for c in cols:
                _column(info, c)
            adapter = self._adapters[key] = RowAdapter(info, cols)
        return adapter

    def _where(self, info: TableInfo, where: dict[str, Any] | None) -> tuple[str, list[Any]]:
        """Equality conjunction; None means IS NULL, a tuple/list/set means IN (...)."""
        if not where:
            return "", []
        shape = self._where_shape(info, where)
        if shape is not None:  # plain values and tuples of them: the clause built once
            clause = self._sql.get(shape)
            if clause is not None:
                params: list[Any] = []
                for col, value in where.items():
                    if type(value) is tuple:
                        params.extend(adapt_value(info, col, v) for v in value)
                    else:
                        params.append(adapt_value(info, col, value))
                return clause, params
            clause, params = self._build_where(info, where)
            self._sql[shape] = clause
            return clause, params
        return self._build_where(info, where)

    @staticmethod
    def _where_shape(info: TableInfo, where: dict[str, Any]) -> tuple[Any, ...] | None:
        """A key for the clause's text: the columns, and each tuple's length (None when a
        value is NULL, a list or a set: those are built every time)."""
        shape: list[Any] = ["where", info.name]
        for col, value in where.items():
            t = type(value)
            if t is tuple:
                shape.append((col, len(value)))
            elif value is None or t is list or t is set or t is frozenset:
                return None
            else:
                shape.append(col)
        return tuple(shape)

    def _build_where(self, info: TableInfo, where: dict[str, Any]) -> tuple[str, list[Any]]:
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


def same_columns(what: str, rows: Sequence[Mapping[str, Any]], cols: list[str]) -> None:
    """Every row has the columns `cols` (in any order) and no other, else a ValueError
    (the same order, the common case, is checked without a set comparison)."""
    order = tuple(cols)
    first = rows[0].keys()
    for r in rows:
        if tuple(r) != order and r.keys() != first:
            raise ValueError(f"{what}: rows with different columns")


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
