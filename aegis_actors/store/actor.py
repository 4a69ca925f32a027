"""The store actor: owns the durable connection; every durable write goes through it.

Write-ahead orders are asked (the caller waits for "new" before calling the broker);
everything else is told. A fill is keyed by the broker's fill id, so a replayed fill is
never recorded twice.

When the durable store is unreachable the actor goes into an outage: WriteOrder answers
an error at once (no order is sent that is not written first), the watchdog is asked for
`limited`, and every other write waits in a bounded local spool that survives a restart.
Reconnection is tried on the clock with backoff; the spool is replayed in order first.

Told writes are batched: each is queued, and when the mailbox holds no more of them
everything queued is written in one transaction (decisions in one executemany),
committed without a disk flush per row (synchronous=NORMAL). Orders' write-ahead stays
one durable commit each, and any other message (a read, a write-ahead, a heartbeat)
flushes what waits first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from aegis_actors import messages as m
from aegis_actors.base import AegisActor
from aegis_actors.messages import (
    AckAlert,
    Alert,
    DecisionRecord,
    KvGet,
    KvPut,
    LoadLedger,
    LoadState,
    ModeChange,
    Msg,
    OrderUpdate,
    PositionUpdate,
    PostureChange,
    RecordFill,
    RequestMode,
    SessionSave,
    Snapshot,
    StoreHealth,
    TradingMode,
    WriteOrder,
)
from aegis_actors.runtime import WATCHDOG
from aegis_actors.store.base import Database
from aegis_actors.store.errors import StoreError, StoreUnavailable
from aegis_actors.store.factory import open_database
from aegis_actors.store.spool import Spool

OPEN_ORDER_STATUSES = ("new", "sent", "accepted", "partially_filled")
REPLAY_BATCH = 200


@dataclass(frozen=True)
class _Retry:
    pass


BATCH_MAX = 2000  # writes per transaction at most
_TOLD_WRITES = (
    OrderUpdate,
    RecordFill,
    PositionUpdate,
    DecisionRecord,
    SessionSave,
    Snapshot,
    ModeChange,
    PostureChange,
    Alert,
    AckAlert,
    KvPut,
)


class Store(AegisActor):
    def on_start(self) -> None:
        cfg = self.settings.store
        self.writes = 0
        self.failed = 0
        self.spooled = 0
        self.replayed = 0
        self.spool_refused = 0
        self.received: dict[str, int] = {}  # non-order writes asked for, by message type
        self.spooled_kinds: dict[str, int] = {}
        self.outage_reason = ""
        self.pending: list[Msg] = []  # told writes waiting for the next flush
        self.batches = 0
        self.backoff = cfg.retry_initial_s
        self.db: Database | None = None
        self.spool = Spool(cfg.spool_path, cfg.spool_max)
        if len(self.spool):
            self.log.warning("spool holds {} writes from before: replaying", len(self.spool))
        if self.connect():
            self.log.info(
                "durable store: {} (schema v{})", self.durable.kind, self.durable.schema_version()
            )
            why = self.replay()
            if why:
                self.outage(why)

    def stopping(self) -> None:
        if getattr(self, "pending", None):
            try:
                self.flush()
            except Exception as exc:  # stopping anyway: say what was not written
                self.log.error("{} writes not flushed at stop: {}", len(self.pending), exc)
        if self.db is not None:
            self.db.close()
        if hasattr(self, "spool"):
            self.spool.close()

    @property
    def durable(self) -> Database:
        if self.db is None or self.outage_reason:
            raise StoreUnavailable(self.outage_reason or "durable store not connected")
        return self.db

    # -- outage and recovery -------------------------------------------------------------

    def connect(self) -> bool:
        """Open (and migrate) the durable store if needed; False means an outage began."""
        if self.db is not None:
            return True
        cfg = self.settings.store
        try:
            self.db = open_database(
                sqlite_path=cfg.sqlite_path,
                postgres_dsn=cfg.postgres_dsn,
                connect_timeout_s=cfg.connect_timeout_s,
            )
        except StoreError as exc:
            self.outage(f"cannot open the durable store: {exc}")
            return False
        return True

    def outage(self, why: str) -> None:
        """The durable store is down: refuse orders, spool writes, go `limited`, retry."""
        first = not self.outage_reason
        self.outage_reason = why
        self.metrics.errors.labels("store_unavailable").inc()
        self.send(WATCHDOG, RequestMode(target=TradingMode.LIMITED, reason=f"durable store: {why}"))
        if first:
            self.backoff = self.settings.store.retry_initial_s
            self.log.error(
                "durable store DOWN ({}): no orders; writes spooled; retry in {:.1f}s",
                why,
                self.backoff,
            )
            self.after(self.backoff, _Retry())

    def on__Retry(self, _msg: _Retry) -> None:
        if not self.outage_reason:
            return
        ok = self.db.ping() if self.db is not None else self.connect_quiet()
        if ok:
            self.outage_reason = ""
            why = self.replay()
            if not why:
                self.log.warning("durable store back: spool replayed, orders allowed again")
                return
            self.outage_reason = why
        self.backoff = min(self.backoff * 2, self.settings.store.retry_max_s)
        self.log.warning("durable store still down; next try in {:.1f}s", self.backoff)
        self.send(WATCHDOG, RequestMode(target=TradingMode.LIMITED, reason="durable store down"))
        self.after(self.backoff, _Retry())

    def connect_quiet(self) -> bool:
        cfg = self.settings.store
        try:
            self.db = open_database(
                sqlite_path=cfg.sqlite_path,
                postgres_dsn=cfg.postgres_dsn,
                connect_timeout_s=cfg.connect_timeout_s,
            )
        except StoreError:
            return False
        return True

    def replay(self) -> str:
        """Apply spooled writes oldest first; at an outage stop and return why ("" = done)."""
        while len(self.spool):
            for seq, kind, raw in self.spool.head(REPLAY_BATCH):
                try:
                    msg = getattr(m, kind).model_validate(json.loads(raw))
                except (AttributeError, ValueError, ValidationError) as exc:
                    self.metrics.errors.labels("spool_bad_entry").inc()
                    self.log.error("spool entry {} ({}) unreadable, dropped: {}", seq, kind, exc)
                    self.spool.remove(seq)
                    continue
                try:
                    self.apply(msg)
                except StoreUnavailable as exc:
                    return str(exc)
                except (StoreError, ValueError, TypeError) as exc:
                    self.failed += 1
                    self.metrics.errors.labels("store_write").inc()
                    self.log.error("spooled {} {} rejected by the store: {}", kind, seq, exc)
                else:
                    self.writes += 1
                    self.replayed += 1
                self.spool.remove(seq)
        return ""

    def on_receive(self, message: Any) -> Any:
        if self.pending and not isinstance(message, _TOLD_WRITES):
            self.flush()  # an ask sees every write told before it
        return super().on_receive(message)

    def write(self, msg: Msg) -> None:
        """A non-order write: batched if the store is up and nothing waits, else spooled."""
        kind = type(msg).__name__
        self.received[kind] = self.received.get(kind, 0) + 1
        if not self.outage_reason and not len(self.spool):
            self.pending.append(msg)
            if len(self.pending) >= BATCH_MAX or self.actor_inbox.empty():
                self.flush()  # the drain is over (or the batch full): one transaction
            return
        self.spool_write(msg)

    def flush(self) -> None:
        """Write what waits in one transaction; on a bad write, one at a time."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        if self.outage_reason or len(self.spool):
            for msg in batch:
                self.spool_write(msg)
            return
        try:
            with self.durable.transaction(durable=False):
                self.apply_batch(batch)
        except StoreUnavailable as exc:
            self.outage(str(exc))
            for msg in batch:
                self.spool_write(msg)
            return
        except (StoreError, ValueError, TypeError):
            for msg in batch:  # rolled back: find the bad one, write the rest
                self.write_one(msg)
            return
        self.writes += len(batch)
        self.batches += 1

    def apply_batch(self, batch: list[Msg]) -> None:
        decisions: list[dict[str, Any]] = []
        for msg in batch:
            self.progressed()  # a slow database makes a long batch: busy, not hung
            if isinstance(msg, DecisionRecord):
                decisions.append(decision_row(msg))
                continue
            if decisions:  # keep the order of writes
                self.durable.insert_many("decisions", decisions, ignore_conflict=True)
                decisions = []
            self.apply(msg)
        self.durable.insert_many("decisions", decisions, ignore_conflict=True)

    def write_one(self, msg: Msg) -> None:
        """One write in its own commit: written, refused (logged), or spooled."""
        if not self.outage_reason and not len(self.spool):
            try:
                self.apply(msg)
            except StoreUnavailable as exc:
                self.outage(str(exc))
            except (StoreError, ValueError, TypeError) as exc:
                self.failed += 1
                self.metrics.errors.labels("store_write").inc()
                self.log.error("{} not written: {}", type(msg).__name__, exc)
                return
            else:
                self.writes += 1
                return
        self.spool_write(msg)

    def spool_write(self, msg: Msg) -> None:
        kind = type(msg).__name__
        if self.spool.append(kind, msg.model_dump(mode="json")):
            self.spooled += 1
            self.spooled_kinds[kind] = self.spooled_kinds.get(kind, 0) + 1
            return
        self.spool_refused += 1
        self.metrics.errors.labels("spool_full").inc()
        self.log.critical(
            "spool full ({} entries): {} LOST", self.spool.max_entries, type(msg).__name__
        )

    def apply(self, msg: Msg) -> None:
        getattr(self, f"apply_{type(msg).__name__}")(msg)

    # -- orders and fills --------------------------------------------------------------

    def on_WriteOrder(self, msg: WriteOrder) -> str:
        o = msg.order
        log = self.log.bind(event_id=o.event_id)
        if self.outage_reason:
            self.metrics.errors.labels("store_write").inc()
            log.error("write-ahead of {} refused: store down", o.client_order_id)
            return f"error: durable store unavailable ({self.outage_reason})"
        row = o.model_dump(mode="json")
        row.update(updated_at=o.created_at)
        try:
            inserted = self.durable.insert("orders", row, ignore_conflict=True)
        except StoreError as exc:
            self.failed += 1
            self.metrics.errors.labels("store_write").inc()
            log.error("write-ahead of {} failed: {}", o.client_order_id, exc)
            if isinstance(exc, StoreUnavailable):
                self.outage(str(exc))
            return f"error: {exc}"
        self.writes += 1
        return "new" if inserted else "duplicate"

    def on_OrderUpdate(self, u: OrderUpdate) -> None:
        self.write(u)

    def apply_OrderUpdate(self, u: OrderUpdate) -> None:
        changes: dict[str, Any] = {"status": u.status, "updated_at": u.ts}
        for key in ("broker_order_id", "filled_qty", "avg_fill_price", "error"):
            value = getattr(u, key)
            if value is not None:
                changes[key] = value
        self.durable.update("orders", {"client_order_id": u.client_order_id}, changes)

    def on_RecordFill(self, msg: RecordFill) -> None:
        self.write(msg)

    def apply_RecordFill(self, msg: RecordFill) -> None:
        self.durable.insert("fills", msg.fill.model_dump(mode="json"), ignore_conflict=True)

    def on_PositionUpdate(self, p: PositionUpdate) -> None:
        self.write(p)

    def apply_PositionUpdate(self, p: PositionUpdate) -> None:
        if p.qty == 0:
            self.durable.delete("positions", {"symbol": p.symbol})
            return
        row = p.model_dump(mode="json", exclude={"ts"})
        row["updated_at"] = p.ts
        self.durable.upsert("positions", row, ("symbol",))

    # -- decisions, sessions, modes, alerts -------------------------------------------

    def on_DecisionRecord(self, d: DecisionRecord) -> None:
        self.write(d)

    def apply_DecisionRecord(self, d: DecisionRecord) -> None:
        self.durable.insert("decisions", decision_row(d), ignore_conflict=True)

    def on_SessionSave(self, s: SessionSave) -> None:
        self.write(s)

    def apply_SessionSave(self, s: SessionSave) -> None:
        db = self.durable
        existing = db.select("sessions", {"session_id": s.session_id})
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
        db.upsert("sessions", row, ("session_id",))

    def on_Snapshot(self, s: Snapshot) -> None:
        self.write(s)

    def apply_Snapshot(self, s: Snapshot) -> None:
        self.durable.insert("snapshots", {"kind": s.kind, "ts": s.ts, "data": s.data})

    def on_ModeChange(self, mc: ModeChange) -> None:
        self.write(mc)

    def apply_ModeChange(self, mc: ModeChange) -> None:
        self.durable.insert(
            "mode_changes",
            {"old": mc.old.value, "new": mc.new.value, "reason": mc.reason, "ts": mc.ts},
        )

    def on_PostureChange(self, p: PostureChange) -> None:
        self.write(p)

    def apply_PostureChange(self, p: PostureChange) -> None:
        db = self.durable
        db.insert(
            "posture_changes",
            {"old": p.old.value, "new": p.new.value, "reason": p.reason, "ts": p.ts},
        )
        db.upsert(
            "kv",
            {
                "key": "posture",
                "value": {"posture": p.new.value, "params": p.params.model_dump()},
                "updated_at": p.ts,
            },
            ("key",),
        )

    def on_Alert(self, a: Alert) -> None:
        self.write(a)

    def apply_Alert(self, a: Alert) -> None:
        self.durable.insert(
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

    # -- reads (raise StoreUnavailable during an outage; askers fall back) --------------

    def on_LoadState(self, msg: LoadState) -> dict[str, Any]:
        """Durable state for the context loader's cache miss, execution and the commander."""
        db = self.durable
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
            for r in db.select("positions")
        }
        mode_rows = db.select("mode_changes", order_by="-id", limit=1)
        posture_rows = db.select("kv", {"key": "posture"})
        sessions = db.select("sessions", {"closed_at": None}, order_by="-opened_at", limit=1)
        session = None
        if sessions:
            row = sessions[0]
            session = {
                "session_id": row["session_id"],
                "opened_at": row["opened_at"],
                "saved_at": row["saved_at"],
                "state": json.loads(row["state"]) if row["state"] else {},
            }
        return {
            "positions": positions,
            "mode": mode_rows[0]["new"] if mode_rows else None,
            "posture": json.loads(posture_rows[0]["value"]) if posture_rows else None,
            "session": session,
        }

    def on_LoadLedger(self, _msg: LoadLedger) -> dict[str, Any]:
        """Orders to check against the broker: those not final, and those marked filled
        whose recorded fills fall short (the process died between the two writes)."""
        db = self.durable
        rows = db.select("orders", {"status": (*OPEN_ORDER_STATUSES, "filled")}, order_by="id")
        ids = [o["client_order_id"] for o in rows]
        filled: dict[str, float] = dict.fromkeys(ids, 0.0)
        fill_ids: dict[str, list[str]] = {i: [] for i in ids}
        for f in db.select("fills", {"client_order_id": ids}) if ids else []:
            filled[f["client_order_id"]] += float(f["qty"] or 0)
            fill_ids[f["client_order_id"]].append(f["fill_id"])
        orders = [
            o
            for o in rows
            if o["status"] != "filled"
            or filled[o["client_order_id"]] < float(o["qty"]) - 1e-9
            or float(o["filled_qty"] or 0) < float(o["qty"]) - 1e-9
        ]
        keep = {o["client_order_id"] for o in orders}
        return {
            "orders": orders,
            "filled": {k: v for k, v in filled.items() if k in keep},
            "fill_ids": {k: v for k, v in fill_ids.items() if k in keep},
        }

    def on_StoreHealth(self, _msg: StoreHealth) -> dict[str, Any]:
        return {"up": not self.outage_reason, "why": self.outage_reason, "spool": len(self.spool)}

    def on_AckAlert(self, a: AckAlert) -> None:
        self.write(a)

    def apply_AckAlert(self, a: AckAlert) -> None:
        self.durable.update("alerts", {"alert_id": a.alert_id}, {"acked_at": a.ts})

    def on_KvGet(self, msg: KvGet) -> Any:
        """Small durable state (e.g. the calendar's last release); None when unknown or down."""
        try:
            rows = self.durable.select("kv", {"key": msg.key})
        except StoreError as exc:
            self.log.warning("kv {} unreadable: {}", msg.key, exc)
            return None
        return json.loads(rows[0]["value"]) if rows else None

    def on_KvPut(self, msg: KvPut) -> None:
        self.write(msg)

    def apply_KvPut(self, msg: KvPut) -> None:
        value = json.dumps(msg.value, separators=(",", ":"), default=str)
        self.durable.upsert("kv", {"key": msg.key, "value": value, "updated_at": msg.ts}, ("key",))

    def status(self) -> dict[str, Any]:
        return {
            "durable": self.db.kind if self.db is not None else "not connected",
            "up": not self.outage_reason,
            "outage": self.outage_reason,
            "cache": self.rt.cache.kind,
            "writes": self.writes,
            "batches": self.batches,
            "pending": len(self.pending),
            "failed_writes": self.failed,
            "spool": len(self.spool),
            "spooled": self.spooled,
            "replayed": self.replayed,
            "spool_refused": self.spool_refused,
            "received": dict(self.received),
            "spooled_kinds": dict(self.spooled_kinds),
        }


_DECISION_FIELDS = tuple(DecisionRecord.model_fields)


def decision_row(d: DecisionRecord) -> dict[str, Any]:
    """The record's fields as they are (already JSON values): no second model dump."""
    return {k: getattr(d, k) for k in _DECISION_FIELDS}
