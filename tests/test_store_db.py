"""Durable-store tests, run against SQLite and a real, per-test PostgreSQL database.

PostgreSQL params fail (not skip) when the server is unreachable, unless
AEGIS_TEST_SKIP_PG=1, so CI cannot go green without having exercised it.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable, Iterator
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_actors.settings import SettingsError, load_settings
from aegis_actors.store import (
    MIGRATIONS,
    TABLES,
    Database,
    PostgresDatabase,
    SQLiteDatabase,
    StoreIntegrityError,
    StoreUnavailable,
    open_database,
)
from aegis_actors.store.base import RowAdapter, adapt_value
from aegis_actors.store.schema import LATEST_VERSION
from aegis_actors.store.sqlite import ROWS_PER_INSERT
from aegis_actors.tree import check_supported

PG_BASE = os.environ.get("AEGIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP_PG = os.environ.get("AEGIS_TEST_SKIP_PG") == "1"

Factory = Callable[[], Database]


# ---- fixtures ---------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def make_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Factory of un-migrated Database handles that all point at the same store."""
    opened: list[Database] = []
    if request.param == "sqlite":
        path = str(tmp_path / "store" / "aegis.db")

        def factory() -> Database:
            opened.append(SQLiteDatabase(path))
            return opened[-1]

    else:
        dsn: str = request.getfixturevalue("pg_dsn")

        def factory() -> Database:
            opened.append(PostgresDatabase(dsn))
            return opened[-1]

    yield factory
    for db in opened:
        db.close()


@pytest.fixture
def db(make_db: Factory) -> Database:
    handle = make_db()
    handle.migrate()
    return handle


def _order(coid: str = "c-1", **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "client_order_id": coid,
        "symbol": "AAPL",
        "side": "buy",
        "qty": 10,
        "order_type": "limit",
        "limit_price": 187.5,
        "intent": "entry",
        "status": "new",
        "created_at": 1_700_000_000.25,
    }
    row.update(extra)
    return row


def _physical_columns(db: Database, table: str) -> set[str]:
    """Columns as the database itself reports them (not the whitelist)."""
    if isinstance(db, SQLiteDatabase):
        conn = db._ensure()
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    assert isinstance(db, PostgresDatabase)
    with db._ensure().cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        return {r[0] for r in cur.fetchall()}


# ---- migrations -------------------------------------------------------------------


def test_migrate_creates_all_tables_and_records_version(make_db: Factory) -> None:
    db = make_db()
    assert db.schema_version() == 0
    assert db.migrate() == LATEST_VERSION
    assert db.schema_version() == LATEST_VERSION
    versions = db.select("schema_version")
    assert [v["version"] for v in versions] == [m.version for m in MIGRATIONS]
    assert isinstance(versions[0]["applied_at"], float)
    for name, info in TABLES.items():
        assert db.count(name) == (len(MIGRATIONS) if name == "schema_version" else 0)
        assert _physical_columns(db, name) == set(info.columns), name


def test_migrate_twice_is_noop_and_keeps_data(make_db: Factory) -> None:
    db = make_db()
    db.migrate()
    db.insert("orders", _order())
    assert db.migrate() == LATEST_VERSION
    assert make_db().migrate() == LATEST_VERSION  # a second process starting up
    assert db.count("schema_version") == len(MIGRATIONS)
    assert db.count("orders") == 1


def test_concurrent_migrate_from_two_handles(make_db: Factory) -> None:
    handles = [make_db(), make_db()]
    barrier = threading.Barrier(len(handles))
    results: list[int] = []
    errors: list[BaseException] = []

    def run(handle: Database) -> None:
        try:
            barrier.wait(timeout=5)
            results.append(handle.migrate())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert errors == []
    assert results == [LATEST_VERSION, LATEST_VERSION]
    assert handles[0].count("schema_version") == len(MIGRATIONS)


def test_open_database_creates_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "aegis.db"
    db = open_database(sqlite_path=str(path))
    try:
        assert db.kind == "sqlite"
        assert path.exists()
        assert db.schema_version() == LATEST_VERSION
        mode = db._ensure().execute("PRAGMA journal_mode").fetchone()[0]  # type: ignore[attr-defined]
        assert mode == "wal"
    finally:
        db.close()


def test_open_database_postgres(pg_dsn: str) -> None:
    db = open_database(postgres_dsn=pg_dsn)
    try:
        assert db.kind == "postgres"
        assert db.schema_version() == LATEST_VERSION
        assert db.ping()
    finally:
        db.close()


# ---- CRUD -------------------------------------------------------------------------


def test_crud_round_trip_with_json_and_bool(db: Database) -> None:
    analysis = {"summary": "beat", "scores": [1, 2.5, None], "nested": {"ok": True}}
    assert db.insert(
        "decisions",
        {
            "decision_id": "d-1",
            "event_id": "e-1",
            "symbol": "AAPL",
            "analysis": analysis,
            "latency_ms": [12, 30],
            "vetoed": True,
            "confidence": 0.8,
            "created_at": 1.5,
        },
    )
    db.insert("decisions", {"decision_id": "d-2", "symbol": "MSFT", "vetoed": 0, "created_at": 2})
    db.insert("decisions", {"decision_id": "d-3", "symbol": "MSFT", "created_at": 3})

    [row] = db.select("decisions", {"decision_id": "d-1"})
    assert json.loads(row["analysis"]) == analysis
    assert json.loads(row["latency_ms"]) == [12, 30]
    assert row["vetoed"] is True
    assert row["confidence"] == pytest.approx(0.8)
    assert row["created_at"] == 1.5 and isinstance(row["id"], int)
    assert db.select("decisions", {"decision_id": "d-2"})[0]["vetoed"] is False
    assert db.select("decisions", {"decision_id": "d-3"})[0]["vetoed"] is None

    assert db.count("decisions") == 3
    assert db.count("decisions", {"vetoed": False}) == 1
    assert db.count("decisions", {"vetoed": None}) == 1
    assert db.count("decisions", {"symbol": ["AAPL", "MSFT"]}) == 3
    assert db.count("decisions", {"symbol": []}) == 0
    ordered = db.select("decisions", order_by="created_at DESC", limit=2)
    assert [r["decision_id"] for r in ordered] == ["d-3", "d-2"]
    assert [r["decision_id"] for r in db.select("decisions", order_by="-symbol, created_at")] == [
        "d-2",
        "d-3",
        "d-1",
    ]

    assert db.update("decisions", {"symbol": "MSFT"}, {"outcome": "win", "vetoed": True}) == 2
    assert db.count("decisions", {"outcome": "win", "vetoed": True}) == 2
    assert db.update("decisions", {"decision_id": "nope"}, {"outcome": "x"}) == 0

    assert db.delete("decisions", {"symbol": "MSFT"}) == 2
    assert db.delete("decisions", {"symbol": "MSFT"}) == 0
    assert db.count("decisions") == 1


def test_upsert_inserts_then_overwrites(db: Database) -> None:
    db.upsert("positions", {"symbol": "AAPL", "qty": 10, "avg_price": 100.0}, key=("symbol",))
    db.upsert("positions", {"symbol": "AAPL", "qty": 15, "updated_at": 9.0}, key=("symbol",))
    [pos] = db.select("positions")
    assert pos["qty"] == 15 and pos["avg_price"] == 100.0 and pos["updated_at"] == 9.0

    state = {"orders": ["c-1"], "equity": 1000.5}
    db.upsert("sessions", {"session_id": "s", "state": state, "saves": 1}, key=("session_id",))
    db.upsert("sessions", {"session_id": "s", "saves": 2}, key=("session_id",))
    [sess] = db.select("sessions")
    assert json.loads(sess["state"]) == state and sess["saves"] == 2
    # a counter column (`add`) grows in SQL; a NULL counts as 0
    db.upsert("sessions", {"session_id": "s", "saves": 1}, key=("session_id",), add=("saves",))
    db.upsert("sessions", {"session_id": "t", "saves": 1}, key=("session_id",), add=("saves",))
    db.update("sessions", {"session_id": "t"}, {"saves": None})
    db.upsert("sessions", {"session_id": "t", "saves": 1}, key=("session_id",), add=("saves",))
    assert [r["saves"] for r in db.select("sessions", order_by="session_id")] == [3, 1]

    db.upsert("kv", {"key": "last_release", "value": "cpi"}, key=("key",))
    db.upsert("kv", {"key": "last_release", "value": "nfp"}, key=("key",))
    assert db.select("kv", {"key": "last_release"})[0]["value"] == "nfp"
    db.upsert("kv", {"key": "only_key"}, key=("key",))  # nothing to update: DO NOTHING
    assert db.count("kv") == 2

    with pytest.raises(ValueError, match="unique key"):
        db.upsert("positions", {"symbol": "AAPL", "qty": 1}, key=("qty",))
    with pytest.raises(ValueError, match="lacks key"):
        db.upsert("positions", {"qty": 1}, key=("symbol",))


def test_duplicate_client_order_id(db: Database) -> None:
    assert db.insert("orders", _order("c-1")) is True
    assert db.insert("orders", _order("c-1", qty=99, status="sent"), ignore_conflict=True) is False
    [row] = db.select("orders", {"client_order_id": "c-1"})
    assert row["qty"] == 10 and row["status"] == "new" and row["filled_qty"] == 0
    with pytest.raises(StoreIntegrityError) as info:
        db.insert("orders", _order("c-1", qty=5))
    assert not isinstance(info.value, StoreUnavailable)
    assert db.count("orders") == 1
    assert db.ping()  # connection still healthy after the constraint error


def test_constraint_violations_are_integrity_errors(db: Database) -> None:
    with pytest.raises(StoreIntegrityError):
        db.insert("orders", _order("c-2", side="hold"))
    with pytest.raises(StoreIntegrityError):
        db.insert("orders", {"client_order_id": "c-3", "side": "buy", "qty": 1})  # no status
    assert db.count("orders") == 0


def test_fill_id_is_recorded_once(db: Database) -> None:
    fill = {"fill_id": "f-1", "client_order_id": "c-1", "qty": 5, "price": 101.25, "ts": 3.0}
    assert db.insert("fills", fill, ignore_conflict=True) is True
    assert db.insert("fills", {**fill, "qty": 6}, ignore_conflict=True) is False
    with pytest.raises(StoreIntegrityError):
        db.insert("fills", fill)
    assert [f["qty"] for f in db.select("fills", {"client_order_id": "c-1"})] == [5]


_BAD_CALLS: list[Callable[[Database], Any]] = [
    lambda d: d.insert("nope", {"a": 1}),
    lambda d: d.insert("orders; DROP TABLE orders", {"symbol": "x"}),
    lambda d: d.insert("orders", {"bogus": 1}),
    lambda d: d.insert("orders", {}),
    lambda d: d.select("orders", {"symbol = symbol OR 1": 1}),
    lambda d: d.select("orders", order_by="symbol; DROP TABLE orders"),
    lambda d: d.select("orders", order_by="bogus"),
    lambda d: d.select("orders", order_by="symbol sideways"),
    lambda d: d.select("orders", limit=-1),
    lambda d: d.count("nope"),
    lambda d: d.update("orders", {"symbol": "x"}, {"bogus": 1}),
    lambda d: d.update("orders", {}, {"status": "x"}),
    lambda d: d.delete("orders", {"bogus": 1}),
    lambda d: d.delete("orders", {}),
    lambda d: d.upsert("kv", {"key": "k"}, key=("bogus",)),
]


def test_unknown_names_rejected(db: Database) -> None:
    for i, call in enumerate(_BAD_CALLS):
        with pytest.raises(ValueError):
            call(db)
            pytest.fail(f"bad call #{i} was accepted")
    assert db.count("orders") == 0  # and nothing was dropped


def test_unsupported_value_type_rejected(db: Database) -> None:
    with pytest.raises(TypeError):
        db.insert("kv", {"key": "k", "value": object()})


class _Side(StrEnum):
    BUY = "buy"


class _Level(IntEnum):
    HIGH = 2


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
# Every kind of value a row may carry: plain ones, JSON ones, subclasses of the plain
# ones (a str enum, an int enum), and ones no column takes (a tuple, bytes, an object).
_value = (
    _json
    | st.sampled_from([_Side.BUY, _Level.HIGH, (1, 2), b"x", object()])
    | st.dictionaries(st.text(max_size=4), _json, max_size=3)
)
_DECISION_COLUMNS = sorted(TABLES["decisions"].columns - {"id"})
_ADAPTERS: dict[tuple[str, ...], RowAdapter] = {}  # shared: each plan is made once, reused


def _reference(info: Any, cols: tuple[str, ...], row: dict[str, Any]) -> Any:
    """What a row binds as: `adapt_value` of each value, or the TypeError it raises."""
    try:
        return tuple(adapt_value(info, c, row[c]) for c in cols)
    except TypeError as exc:
        return ("TypeError", str(exc))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_row_binds_each_value_as_adapt_value_makes_it(data: st.DataObject) -> None:
    """The row adapter plans each row shape once; what it binds is `adapt_value` of every
    value, for any mix of types, in boolean columns and others (a bool column: vetoed)."""
    info = TABLES["decisions"]
    cols = tuple(data.draw(st.sampled_from([_DECISION_COLUMNS, ["vetoed"], ["symbol", "vetoed"]])))
    adapter = _ADAPTERS.setdefault(cols, RowAdapter(info, cols))
    for _ in range(3):  # a few rows of one column set, through one adapter
        row = {c: data.draw(_value) for c in cols}
        try:
            got = adapter(row)
        except TypeError as exc:
            got = ("TypeError", str(exc))
        assert got == _reference(info, cols, row)
        if not isinstance(got[0], str) or got[0] != "TypeError":
            assert [type(v) for v in got] == [type(v) for v in _reference(info, cols, row)]


def _decision(rng: random.Random, i: int) -> dict[str, Any]:
    """A decision row as the commander's records give them, now and then with None, an
    int or a bool where a float or JSON usually is."""
    return {
        "decision_id": f"d-{rng.randint(0, 300)}",
        "event_id": f"e-{i}",
        "symbol": rng.choice(["AAPL", "MSFT", "S00042"]),
        "analysis": rng.choice([None, {"direction": "up", "stamps": {"t0": 1.5 + i}}]),
        "verdict": rng.choice([None, {"approve": True, "reasons": ["ok", "é"]}]),
        "decision": rng.choice([None, {"action": "buy", "limit_price": 100.0 + i / 7}]),
        "vetoed": rng.choice([True, False, 0, 1, None]),
        "confidence": rng.choice([None, 0.5, 1, i / 3]),
        "outcome": rng.choice(["hold", "decided", "refused"]),
        "latency_ms": {"analysis": i / 10},
        "created_at": 1.7e9 + i / 1000,
        "prompt_versions": {"analyst": "rules.v2"},
        "models": {},
        "tokens": rng.choice([{}, {"analyst": {"input": 3, "output": i}}]),
        "cost_usd": 0.0,
        "analysis_confidence": rng.choice([None, 0.25]),
        "verdict_confidence": 0.9,
    }


def test_a_batch_of_rows_is_the_ledger_one_insert_a_row_makes(tmp_path: Path) -> None:
    """SQLite writes a transaction's batch many rows to a statement: the ledger holds the
    same rows under the same ids (a skipped duplicate uses up its id, as ever) and the
    count is the same as one INSERT a row, for batch sizes around the chunk sizes; a
    clash in a batch (no ignore_conflict) fails it whole, as a row a statement did."""
    sizes = [1, 2, 3, ROWS_PER_INSERT - 1, ROWS_PER_INSERT, ROWS_PER_INSERT + 1, 150, 0]
    rng = random.Random(7)
    batches = [[_decision(rng, i * 1000 + k) for k in range(n)] for i, n in enumerate(sizes)]
    fast, slow = (
        SQLiteDatabase(str(tmp_path / "fast.db")),
        SQLiteDatabase(str(tmp_path / "slow.db")),
    )
    try:
        for d in (fast, slow):
            d.migrate()
        for rows in batches:
            with fast.transaction(durable=False):
                count = fast.insert_many("decisions", rows, ignore_conflict=True)
            with slow.transaction(durable=False):
                assert count == sum(slow.insert("decisions", r, ignore_conflict=True) for r in rows)
        unique = [dict(r, decision_id=f"u-{i}") for i, r in enumerate(batches[6])]
        with fast.transaction(durable=False):  # no clash: every row, counted
            assert fast.insert_many("decisions", unique) == len(unique)
        with slow.transaction(durable=False):
            for r in unique:
                slow.insert("decisions", r)
        clash = [*unique[:70], unique[3]]
        with pytest.raises(StoreIntegrityError), fast.transaction(durable=False):
            fast.insert_many("decisions", clash)
        outside = [dict(r, decision_id=f"o-{i}") for i, r in enumerate(batches[5])]
        assert fast.insert_many("decisions", outside) == len(outside)  # autocommitted rows
        for r in outside:
            slow.insert("decisions", r)
        assert fast.select("decisions", order_by="id") == slow.select("decisions", order_by="id")
        seq = "SELECT seq FROM sqlite_sequence WHERE name = 'decisions'"
        assert fast._execute(seq, (), retry=True) == slow._execute(seq, (), retry=True)
    finally:
        fast.close()
        slow.close()


def test_threads_share_one_handle(db: Database) -> None:
    def worker(n: int) -> None:
        for i in range(15):
            db.insert("fills", {"fill_id": f"f-{n}-{i}", "client_order_id": f"c-{n}"})
            db.count("fills", {"client_order_id": f"c-{n}"})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert db.count("fills") == 90


def test_closed_handle_raises_unavailable(db: Database) -> None:
    db.close()
    db.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        db.insert("kv", {"key": "k"})
    assert db.ping() is False


# ---- PostgreSQL connection loss ----------------------------------------------------


def _terminate_store_backends(admin: psycopg2.extensions.connection, dsn: str) -> int:
    dbname = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
        return len(cur.fetchall())


def test_pg_write_after_backend_terminated(
    pg_dsn: str, pg_admin: psycopg2.extensions.connection
) -> None:
    db = open_database(postgres_dsn=pg_dsn)
    try:
        db.insert("orders", _order("c-1"))
        assert _terminate_store_backends(pg_admin, pg_dsn) == 1
        try:
            outcome: bool | None = db.insert("orders", _order("c-2"))
        except StoreUnavailable:
            outcome = None  # acceptable: a write with unknown outcome is not replayed
        assert outcome in (True, None)
        assert db.insert("orders", _order("c-3")) is True
        assert {r["client_order_id"] for r in db.select("orders")} >= {"c-1", "c-3"}
    finally:
        db.close()


def test_pg_read_after_backend_terminated_reconnects(
    pg_dsn: str, pg_admin: psycopg2.extensions.connection
) -> None:
    db = open_database(postgres_dsn=pg_dsn)
    try:
        db.insert("kv", {"key": "k", "value": "v"})
        assert _terminate_store_backends(pg_admin, pg_dsn) == 1
        assert db.select("kv")[0]["value"] == "v"  # reads replay once on a new connection
        assert _terminate_store_backends(pg_admin, pg_dsn) == 1
        assert db.ping() is True
        assert db.count("kv") == 1
    finally:
        db.close()


def test_pg_unreachable_is_store_unavailable() -> None:
    db = PostgresDatabase("postgresql://postgres@127.0.0.1:1/postgres", connect_timeout=2)
    assert db.ping() is False
    with pytest.raises(StoreUnavailable):
        db.migrate()
    with pytest.raises(StoreUnavailable):
        open_database(postgres_dsn="postgresql://postgres@127.0.0.1:1/postgres")
    assert "***" in repr(PostgresDatabase("postgresql://u:secret@h/db"))


def test_sqlite_write_ahead_fsyncs_unless_a_replay_asks_for_normal(tmp_path: Path) -> None:
    """Orders' write-ahead commits with synchronous=FULL (2) on a live ledger, also after a
    non-durable batch; a replay's ledger (an output a rerun remakes) asks for NORMAL (1)."""

    def level(db: Database) -> int:
        with db.transaction(durable=False):
            pass  # a batch switches to NORMAL and back
        return int(db._ensure().execute("PRAGMA synchronous").fetchone()[0])  # type: ignore[attr-defined]

    live = open_database(sqlite_path=str(tmp_path / "live.db"))
    replay = open_database(sqlite_path=str(tmp_path / "replay.db"), sqlite_synchronous="normal")
    try:
        assert level(live) == 2
        assert level(replay) == 1
    finally:
        live.close()
        replay.close()
    with pytest.raises(ValueError, match="'full' or 'normal'"):
        open_database(sqlite_path=str(tmp_path / "x.db"), sqlite_synchronous="off")


def test_a_replay_ledger_groups_its_transactions_each_still_all_or_nothing(
    tmp_path: Path,
) -> None:
    """`commit_every` > 1 (a replay): transactions commit in groups, so another reader
    sees them only at the group's commit (or the close); a failing one is rolled back
    alone, as when each commits on its own. A live run refuses the setting."""
    path = str(tmp_path / "replay.db")
    db = open_database(sqlite_path=path, sqlite_synchronous="normal", sqlite_commit_every=3)
    reader = open_database(sqlite_path=path)

    def kv(n: int) -> dict[str, Any]:
        return {"key": f"k{n}", "value": "v", "updated_at": float(n)}

    def keys() -> list[str]:
        return [r["key"] for r in reader.select("kv", order_by="key")]

    try:
        for n in (1, 2):
            with db.transaction():
                db.insert("kv", kv(n))
        assert keys() == []  # two of three: not committed yet
        assert [r["key"] for r in db.select("kv", order_by="key")] == ["k1", "k2"]  # its own
        with pytest.raises(StoreIntegrityError), db.transaction():
            db.insert("kv", kv(3))
            db.insert("kv", kv(1))  # a clash: this transaction only is rolled back
        with db.transaction():
            db.insert("kv", kv(4))
        assert keys() == ["k1", "k2", "k4"]  # the third one released commits the group
        with db.transaction():
            db.insert("kv", kv(5))
        with pytest.raises(StoreIntegrityError), db.group():  # statements, each atomic
            db.insert("kv", kv(1))
        with db.group():
            db.insert("kv", kv(6))  # joins the group, no commit of its own
        assert keys() == ["k1", "k2", "k4"]
        db.close()  # the close commits what the group holds
        assert keys() == ["k1", "k2", "k4", "k5", "k6"]
    finally:
        db.close()
        reader.close()
    with pytest.raises(ValueError, match="commit_every"):
        open_database(sqlite_path=str(tmp_path / "x.db"), sqlite_commit_every=0)
    replay = {"kind": "replay", "replay_file": "bars.csv"}
    check_supported(load_settings(None, feed=replay, store={"sqlite_commit_every": 500}))
    with pytest.raises(SettingsError, match="sqlite_commit_every: grouped commits"):
        check_supported(load_settings(None, store={"sqlite_commit_every": 500}))
