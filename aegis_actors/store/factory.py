"""Pick the backend from configuration and bring its schema up to date."""

from __future__ import annotations

import threading

from .base import Database
from .postgres import PostgresDatabase
from .sqlite import SQLiteDatabase


def open_database(
    *,
    sqlite_path: str = "var/aegis.db",
    postgres_dsn: str = "",
    connect_timeout_s: int = 5,
    io_timeout_s: float = 10.0,
    stopping: threading.Event | None = None,
    sqlite_synchronous: str = "full",
    sqlite_commit_every: int = 1,
) -> Database:
    """PostgreSQL when ``postgres_dsn`` is set, else SQLite at ``sqlite_path``; migrated.

    Raises StoreUnavailable if the store cannot be reached; the connection is closed
    again when migration fails so no half-open handle leaks.
    """
    db: Database = (
        PostgresDatabase(
            postgres_dsn,
            connect_timeout=connect_timeout_s,
            io_timeout_s=io_timeout_s,
            stopping=stopping,
        )
        if postgres_dsn
        else SQLiteDatabase(
            sqlite_path, synchronous=sqlite_synchronous, commit_every=sqlite_commit_every
        )
    )
    try:
        db.migrate()
    except BaseException:
        db.close()
        raise
    return db
