"""Durable store: orders, fills, positions, decisions and session state.

``open_database`` returns a migrated :class:`Database` backed by PostgreSQL or
SQLite behind the same dict-based API, so the store actor is backend-agnostic.
"""

from .base import Database
from .errors import LedgerConflict, StoreError, StoreIntegrityError, StoreUnavailable
from .factory import open_database
from .postgres import PostgresDatabase
from .schema import LATEST_VERSION, MIGRATIONS, TABLES, Migration
from .sqlite import SQLiteDatabase

__all__ = [
    "LATEST_VERSION",
    "LedgerConflict",
    "MIGRATIONS",
    "TABLES",
    "Database",
    "Migration",
    "PostgresDatabase",
    "SQLiteDatabase",
    "StoreError",
    "StoreIntegrityError",
    "StoreUnavailable",
    "open_database",
]
