"""A bounded local spool for durable writes made while the durable store is down.

It is its own SQLite file (not the durable store's connection) so it works when
PostgreSQL does not, and it survives a restart: entries keep their arrival order and
are removed, a batch at a time, only after the durable store has taken them, so a crash
during replay repeats at most that batch (idempotent for keyed rows: orders, fills, decisions).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_DDL = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
)
"""


class Spool:
    """FIFO of (kind, JSON data); `append` refuses (returns False) beyond `max_entries`."""

    def __init__(self, path: str, max_entries: int) -> None:
        self.path = path
        self.max_entries = max_entries
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # a spooled write is a promise
        self._conn.execute(_DDL)
        self._count = int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def __len__(self) -> int:
        return self._count

    def append(self, kind: str, data: dict[str, Any]) -> bool:
        with self._lock:
            if self._count >= self.max_entries:
                return False
            self._conn.execute(
                "INSERT INTO spool (kind, data) VALUES (?, ?)",
                (kind, json.dumps(data, separators=(",", ":"), default=str)),
            )
            self._count += 1
            return True

    def head(self, n: int = 100) -> list[tuple[int, str, str]]:
        """The oldest `n` entries as (seq, kind, raw JSON), oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, kind, data FROM spool ORDER BY seq LIMIT ?", (n,)
            ).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def remove(self, seq: int) -> None:
        with self._lock:
            cur = self._conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            self._count -= cur.rowcount

    def remove_upto(self, seq: int) -> None:
        """Remove every entry up to `seq` in one transaction (one fsync for a batch: a
        crash mid-batch replays it, which keyed rows take idempotently)."""
        with self._lock:
            cur = self._conn.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
            self._count -= cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()
