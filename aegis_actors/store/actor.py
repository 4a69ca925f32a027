"""The store actor: owns the durable connection; every durable write goes through it.

Write-ahead orders are asked (the caller waits for "new" before calling the broker);
everything else is told. A fill is keyed by the broker's fill id, so a replayed fill is
never recorded twice.
"""

from __future__ import annotations

import json
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.messages import (
    Alert,
    DecisionRecord,
    KvGet,
    KvPut,
    LoadState,
    ModeChange,
    OrderUpdate,
    PositionUpdate,
    PostureChange,
    RecordFill,
    SessionSave,
    Snapshot,
    WriteOrder,
)
from aegis_actors.store.base import Database
from aegis_actors.store.errors import StoreError, StoreUnavailable
from aegis_actors.store.factory import open_database


class Store(AegisActor):
    def on_start(self) -> None:
        cfg = self.settings.store
        self.writes = 0
        self.failed = 0
        self.db: Database = open_database(
            sqlite_path=cfg.sqlite_path, postgres_dsn=cfg.postgres_dsn
        )
        self.log.info("durable store: {} (schema v{})", self.db.kind, self.db.schema_version())

    def stopping(self) -> None:
        if hasattr(self, "db"):
            self.db.close()

    def write(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
        except (StoreError, ValueError, TypeError) as exc:
            self.failed += 1
            kind = "store_unavailable" if isinstance(exc, StoreUnavailable) else "store_write"
            self.metrics.errors.labels(kind).inc()
            self.log.error("{} not written: {}", what, exc)
            return None
        self.writes += 1
        return out

    # -- orders and fills --------------------------------------------------------------

    def on_WriteOrder(self, msg: WriteOrder) -> str:
        o = msg.order
        row = o.model_dump(mode="json")
        row.update(updated_at=o.created_at)
        try:
            inserted = self.db.insert("orders", row, ignore_conflict=True)
        except StoreError as exc:
            self.failed += 1
            self.metrics.errors.labels("store_write").inc()
            self.log.bind(event_id=o.event_id).error(
                "write-ahead of {} failed: {}", o.client_order_id, exc
            )
            return f"error: {exc}"
        self.writes += 1
        return "new" if inserted else "duplicate"

    def on_OrderUpdate(self, u: OrderUpdate) -> None:
        changes: dict[str, Any] = {"status": u.status, "updated_at": u.ts}
        for key in ("broker_order_id", "filled_qty", "avg_fill_price", "error"):
            value = getattr(u, key)
            if value is not None:
                changes[key] = value
        self.write(
            f"order update {u.client_order_id}",
            self.db.update,
            "orders",
            {"client_order_id": u.client_order_id},
            changes,
        )

    def on_RecordFill(self, msg: RecordFill) -> None:
        self.write(
            f"fill {msg.fill.fill_id}",
            self.db.insert,
            "fills",
            msg.fill.model_dump(mode="json"),
            ignore_conflict=True,
        )

    def on_PositionUpdate(self, p: PositionUpdate) -> None:
        if p.qty == 0:
            self.write(f"position {p.symbol}", self.db.delete, "positions", {"symbol": p.symbol})
            return
        row = p.model_dump(mode="json", exclude={"ts"})
        row["updated_at"] = p.ts
        self.write(f"position {p.symbol}", self.db.upsert, "positions", row, ("symbol",))

    # -- decisions, sessions, modes, alerts -------------------------------------------

    def on_DecisionRecord(self, d: DecisionRecord) -> None:
        self.write(
            f"decision {d.decision_id}",
            self.db.insert,
            "decisions",
            d.model_dump(mode="json"),
            ignore_conflict=True,
        )

    def on_SessionSave(self, s: SessionSave) -> None:
        existing = self.db.select("sessions", {"session_id": s.session_id})
        saves = (existing[0]["saves"] or 0) + 1 if existing else 1
        row = {
            "session_id": s.session_id,
            "opened_at": s.opened_at,
            "state": s.state,
            "saved_at": s.ts,
            "saves": saves,
        }
        if s.closed_at is not None:
            row["closed_at"] = s.closed_at
        self.write(f"session {s.session_id}", self.db.upsert, "sessions", row, ("session_id",))

    def on_Snapshot(self, s: Snapshot) -> None:
        self.write(
            f"snapshot {s.kind}",
            self.db.insert,
            "snapshots",
            {"kind": s.kind, "ts": s.ts, "data": s.data},
        )

    def on_ModeChange(self, m: ModeChange) -> None:
        self.write(
            "mode change",
            self.db.insert,
            "mode_changes",
            {"old": m.old.value, "new": m.new.value, "reason": m.reason, "ts": m.ts},
        )

    def on_PostureChange(self, p: PostureChange) -> None:
        self.write(
            "posture change",
            self.db.insert,
            "posture_changes",
            {"old": p.old.value, "new": p.new.value, "reason": p.reason, "ts": p.ts},
        )
        self.write(
            "posture state",
            self.db.upsert,
            "kv",
            {
                "key": "posture",
                "value": {"posture": p.new.value, "params": p.params.model_dump()},
                "updated_at": p.ts,
            },
            ("key",),
        )

    def on_Alert(self, a: Alert) -> None:
        self.write(
            f"alert {a.alert_id}",
            self.db.insert,
            "alerts",
            {
                "alert_id": a.alert_id,
                "level": a.level.value,
                "kind": a.kind,
                "message": a.message,
                "ts": a.ts,
            },
            ignore_conflict=True,
        )

    # -- reads -------------------------------------------------------------------------

    def on_LoadState(self, msg: LoadState) -> dict[str, Any]:
        """Durable state for the context loader's cache miss and execution's reconcile."""
        positions = {
            r["symbol"]: {
                k: r[k]
                for k in (
                    "symbol",
                    "qty",
                    "avg_price",
                    "opened_at",
                    "posture",
                    "stop_loss",
                    "take_profit",
                )
            }
            for r in self.db.select("positions")
        }
        mode_rows = self.db.select("mode_changes", order_by="-id", limit=1)
        posture_rows = self.db.select("kv", {"key": "posture"})
        return {
            "positions": positions,
            "mode": mode_rows[0]["new"] if mode_rows else None,
            "posture": json.loads(posture_rows[0]["value"]) if posture_rows else None,
        }

    def on_KvGet(self, msg: KvGet) -> Any:
        rows = self.db.select("kv", {"key": msg.key})
        return json.loads(rows[0]["value"]) if rows else None

    def on_KvPut(self, msg: KvPut) -> None:
        value = json.dumps(msg.value, separators=(",", ":"), default=str)
        row = {"key": msg.key, "value": value, "updated_at": msg.ts}
        self.write(f"kv {msg.key}", self.db.upsert, "kv", row, ("key",))

    def status(self) -> dict[str, Any]:
        return {
            "durable": self.db.kind,
            "cache": self.rt.cache.kind,
            "writes": self.writes,
            "failed_writes": self.failed,
        }
