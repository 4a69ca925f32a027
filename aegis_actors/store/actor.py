"""The store actor: owns the durable connection; every durable write goes through it.

Write-ahead orders are asked (the caller waits for a `WriteAheadAck` saying `new` before
calling the broker); everything else is told. A fill is keyed by the broker's fill id,
so a replayed fill is never recorded twice.

When the durable store is unreachable the actor goes into an outage: WriteOrder answers
an error at once (no order is sent that is not written first), the watchdog is asked for
`limited`, and every other write waits in a bounded local spool that survives a restart.
Reconnection is tried on the clock with backoff; the spool is replayed in order first.

Told writes are batched: each is queued, and when the mailbox holds no more of them
everything queued is written in one transaction (decisions in one bulk insert),
committed without a disk flush per row (synchronous=NORMAL). Under load (the last
commit less than `GROUP_COMMIT_S` ago) writes that carry no money (decisions, alerts,
snapshots, ...) wait up to that long for more, so a busy store commits fewer, larger
transactions; an order update, fill or position is committed at the end of its turn.
An order's write-ahead takes what waits into its own durable commit (the order row is on
disk, with everything told before it, before the ask returns); any other message (a read,
a heartbeat) flushes what waits first.

A replay's ledger (`store.sqlite_commit_every` > 1, refused for a live run) commits in
groups: its orders reach no real broker and a crash means a rerun. There a write-ahead
only adds its order row to the open group, and told writes wait for BATCH_MAX of them
(or another ask, or the stop); a batch writes each order's run of updates as one UPDATE,
a symbol's last position only, and the fills, decisions, sessions and alerts each in one
executemany. The ledger a user reads is the same row for row (tests/test_store_actor.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from aegis_actors import messages as m
from aegis_actors.base import AegisActor
from aegis_actors.execution.lifecycle import LEGAL
from aegis_actors.messages import (
    OPEN_STATUSES,
    AckAlert,
    Alert,
    AlertLevel,
    DecisionRecord,
    DurableState,
    KvGet,
    KvPut,
    KvValue,
    Ledger,
    LoadLedger,
    LoadState,
    ModeChange,
    Msg,
    OrderStatus,
    OrderUpdate,
    PositionUpdate,
    PostureChange,
    RecordFill,
    RequestMode,
    SessionSave,
    Snapshot,
    StoreHealth,
    StoreHealthReply,
    TradingMode,
    WriteAhead,
    WriteAheadAck,
    WriteAheadExpired,
    WriteOrder,
)
from aegis_actors.runtime import WATCHDOG
from aegis_actors.store.base import Database
from aegis_actors.store.errors import LedgerConflict, StoreError, StoreUnavailable
from aegis_actors.store.factory import open_database
from aegis_actors.store.spool import Spool

# Orders reconciliation checks at start: those that may still change at the broker, and
# those whose broker answer was lost (`unknown`, until reconciliation answers).
OPEN_ORDER_STATUSES = tuple(s.value for s in (*OPEN_STATUSES, OrderStatus.UNKNOWN))
REPLAY_BATCH = 200
STOP_REPLAY_BUDGET_S = 3.0  # a spool still replaying when the run stops: this long, then kept
# The statuses an update to each status may come from (itself included: more fills, an
# id or a price added): the order state machine, as the ledger applies it.
FROM_STATUSES: dict[OrderStatus, tuple[str, ...]] = {
    new: tuple(sorted({new.value} | {old.value for old, nxt in LEGAL.items() if new in nxt}))
    for new in OrderStatus
}
# What makes two rows under one unique key the same row (an idempotent replay).
ORDER_IDENTITY = ("decision_id", "symbol", "side", "qty", "order_type", "limit_price", "intent")
FILL_IDENTITY = ("client_order_id", "symbol", "side", "qty", "price", "fee")
DECISION_IDENTITY = ("event_id", "symbol")


def ack(status: WriteAhead, detail: str = "") -> WriteAheadAck:
    return WriteAheadAck(status=status, detail=detail)


@dataclass(frozen=True)
class _Retry:
    pass


BATCH_MAX = 2000  # writes per transaction at most
GROUP_COMMIT_S = 0.05  # under load, writes without money in them wait this long for more
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
    WriteAheadExpired,
)
_TOLD_TYPES = frozenset(_TOLD_WRITES)
# Told writes that carry money: committed at the end of their turn, never kept waiting.
_MONEY_WRITES = (OrderUpdate, RecordFill, PositionUpdate, WriteAheadExpired)


class Store(AegisActor):
    linger_s = GROUP_COMMIT_S

    def on_start(self) -> None:
        cfg = self.settings.store
        self.writes = 0
        self.failed = 0
        self.spooled = 0
        self.replayed = 0
        self.spool_refused = 0
        self.conflicts = 0
        self.expired = 0  # write-aheads refused past their deadline
        self.received: dict[type, int] = {}  # non-order writes asked for, by message type
        self.spooled_kinds: dict[str, int] = {}
        self.outage_reason = ""
        self.pending: list[Msg] = []  # told writes waiting for the next flush
        # A replay's grouped ledger (store.sqlite_commit_every > 1): nothing is committed
        # before the group anyway, so told writes wait for BATCH_MAX of them (or an ask
        # other than a write-ahead, or the stop) and go as one batch, each table's rows
        # in one executemany; a write-ahead only adds its order row to the open group.
        self.grouped = cfg.sqlite_commit_every > 1 and not cfg.postgres_dsn
        self.money_pending = False
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
            try:
                self.db.commit()  # a replay's grouped transactions
            except Exception as exc:
                self.log.error("ledger not committed at stop: {}", exc)
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
                io_timeout_s=cfg.io_timeout_s,
                stopping=self.rt.stopping,
                sqlite_synchronous=cfg.sqlite_synchronous,
                sqlite_commit_every=cfg.sqlite_commit_every,
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
                left = f"; {len(self.spool)} writes still spooled" if len(self.spool) else ""
                self.log.warning("durable store back: orders allowed again{}", left)
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
                io_timeout_s=cfg.io_timeout_s,
                stopping=self.rt.stopping,
                sqlite_synchronous=cfg.sqlite_synchronous,
                sqlite_commit_every=cfg.sqlite_commit_every,
            )
        except StoreError:
            return False
        return True

    def replay(self) -> str:
        """Apply spooled writes oldest first; at an outage stop and return why ("" = done)."""
        cutoff: float | None = None
        while len(self.spool):
            if self.rt.stopping.is_set():  # a long spool never holds up the stop for long
                cutoff = cutoff or time.monotonic() + STOP_REPLAY_BUDGET_S
                if time.monotonic() >= cutoff:
                    self.log.warning(
                        "stopping: {} spooled writes kept for the next run", len(self.spool)
                    )
                    return ""
            batch = self.spool.head(REPLAY_BATCH)
            msgs: list[tuple[int, str, Msg]] = []
            for seq, kind, raw in batch:
                try:
                    msgs.append((seq, kind, getattr(m, kind).model_validate(json.loads(raw))))
                except (AttributeError, ValueError, ValidationError) as exc:
                    self.metrics.errors.labels("spool_bad_entry").inc()
                    self.log.error("spool entry {} ({}) unreadable, dropped: {}", seq, kind, exc)
            try:  # one durable commit per batch (the spool's entries go only after it)
                with self.durable.transaction(durable=True):
                    for _seq, _kind, msg in msgs:
                        self.apply(msg)
            except StoreUnavailable as exc:
                return str(exc)  # rolled back: the whole batch is replayed next time
            except (StoreError, ValueError, TypeError):
                why = self.replay_one_by_one(msgs)  # rolled back: find the bad one
                if why:
                    return why
            else:
                self.writes += len(msgs)
                self.replayed += len(msgs)
            self.spool.remove_upto(batch[-1][0])
        return ""

    def replay_one_by_one(self, msgs: list[tuple[int, str, Msg]]) -> str:
        """A batch that failed as a whole, entry by entry: a refused entry is logged and
        dropped, the rest written; at an outage, what is done is removed and why returned."""
        for i, (seq, kind, msg) in enumerate(msgs):
            try:
                self.apply(msg)
            except StoreUnavailable as exc:
                if i:
                    self.spool.remove_upto(msgs[i - 1][0])
                return str(exc)
            except LedgerConflict as exc:
                self.conflict(exc)
            except (StoreError, ValueError, TypeError) as exc:
                self.failed += 1
                self.metrics.errors.labels("store_write").inc()
                self.log.error("spooled {} {} rejected by the store: {}", kind, seq, exc)
            else:
                self.writes += 1
                self.replayed += 1
        return ""

    def on_receive(self, message: Any) -> Any:
        if type(message) in _TOLD_TYPES:  # each one's handler is `write`: called at once
            self._progress[0] += 1  # counted as AegisActor.on_receive counts a message
            self.write(message)
            return None
        if self.pending and not isinstance(message, _TOLD_WRITES) and not self.joins(message):
            self.flush()  # an ask sees every write told before it
        try:
            return super().on_receive(message)
        except StoreUnavailable as exc:
            # A read that found the server gone (the asker falls back) is an outage too:
            # the next write-ahead (a stop-loss) is spooled at once instead of spending
            # another connect timeout against its deadline.
            if not self.outage_reason:
                self.outage(str(exc))
            raise

    def write(self, msg: Msg) -> None:
        """A non-order write: batched if the store is up and nothing waits, else spooled."""
        kind = type(msg)
        received = self.received
        received[kind] = received.get(kind, 0) + 1
        if self.outage_reason or len(self.spool):
            self.spool_write(msg)
            return
        pending = self.pending
        pending.append(msg)
        if isinstance(msg, _MONEY_WRITES):
            self.money_pending = True  # committed at the end of this drain, no linger
        if len(pending) >= BATCH_MAX or (
            not self.grouped and (self.money_pending or not self.hold()) and not self.more_queued()
        ):
            self.flush()  # the drain is over (or the batch full): one transaction

    def release_held(self) -> None:
        if not self.grouped:
            self.flush()  # the end of the turn or of the linger: what waits, in one commit
        super().release_held()

    def flush(self) -> None:
        """Write what waits in one transaction; on a bad write, one at a time."""
        batch, self.pending = self.pending, []
        self.money_pending = False
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
        """The batch in one transaction. Decisions, fills, sessions and alerts each go as
        one bulk write: each of those tables is written by its message kind alone (an
        acknowledgement in the batch keeps the alerts in order with it), so the order of
        writes within every table is kept. Everything else is written in its order."""
        db = self.durable
        rows: dict[type, list[Any]] = {DecisionRecord: [], RecordFill: [], SessionSave: []}
        if not any(type(msg) is AckAlert for msg in batch):
            rows[Alert] = []
        for msg in coalesce(batch):
            self.progressed()  # a slow database makes a long batch: busy, not hung
            if msg is None:
                continue  # a position update a later one in the batch supersedes
            if type(msg) is list:
                self.apply_updates(msg)
                continue
            bucket = rows.get(type(msg))
            if bucket is not None:
                bucket.append(msg)
                continue
            self.apply(msg)
        # No conflict is skipped here: a decision or fill id already in the ledger under
        # another row fails the batch, which is then written one at a time (`insert_once`:
        # the same row is a no-op, a different one a LedgerConflict with its alert).
        db.insert_many("decisions", [decision_row(d) for d in rows[DecisionRecord]])
        fills = [f.fill.model_dump(mode="json") for f in rows[RecordFill]]
        db.insert_many_once("fills", fills, "fill_id", FILL_IDENTITY)
        for shape in runs([session_row(s) for s in rows[SessionSave]]):
            db.upsert_many("sessions", shape, ("session_id",), add=("saves",))
        db.insert_many("alerts", [alert_row(a) for a in rows.get(Alert, [])], ignore_conflict=True)

    def write_one(self, msg: Msg) -> None:
        """One write in its own commit: written, refused (logged), or spooled."""
        if not self.outage_reason and not len(self.spool):
            try:
                self.apply(msg)
            except StoreUnavailable as exc:
                self.outage(str(exc))
            except LedgerConflict as exc:
                self.conflict(exc)
                return
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

    def conflict(self, exc: LedgerConflict) -> None:
        """A different row under a key the ledger already holds: never silently ignored."""
        self.failed += 1
        self.conflicts += 1
        self.metrics.errors.labels("ledger_conflict").inc()
        self.log.error("LEDGER CONFLICT, not written: {}", exc)
        self.alert(AlertLevel.CRITICAL, "ledger_conflict", str(exc))

    def apply(self, msg: Msg) -> None:
        getattr(self, f"apply_{type(msg).__name__}")(msg)

    # -- orders and fills --------------------------------------------------------------

    def joins(self, message: Any) -> bool:
        """A write-ahead that can take the held writes into its own transaction."""
        return (
            isinstance(message, WriteOrder)
            and not self.outage_reason
            and not len(self.spool)
            and (message.deadline is None or time.time() <= message.deadline)
        )

    def write_ahead_with_batch(self, row: dict[str, Any]) -> bool | None:
        """The held writes, then the order row, in one durable transaction committed before
        the ask returns (one commit, not two); None when it failed: rolled back, the batch
        then written as ever (`flush`) and the write-ahead left to be made on its own."""
        batch = self.pending
        try:
            with self.durable.transaction():
                self.apply_batch(batch)
                inserted = self.durable.insert_once(
                    "orders", row, "client_order_id", ORDER_IDENTITY
                )
        except (StoreError, ValueError, TypeError):
            self.flush()
            return None
        self.pending = []
        self.money_pending = False
        self.writes += len(batch) + 1
        self.batches += 1
        return inserted

    def on_WriteOrder(self, msg: WriteOrder) -> WriteAheadAck:
        o = msg.order
        if self.pending and not (self.grouped and self.joins(msg)):
            if self.joins(msg):
                row = o.model_dump(mode="json")
                row.update(updated_at=o.created_at)
                inserted = self.write_ahead_with_batch(row)
                if inserted is not None:
                    return ack(WriteAhead.NEW if inserted else WriteAhead.DUPLICATE)
            else:
                self.flush()
        log = self.log.bind(event_id=o.event_id)
        if self.outage_reason:
            if o.intent == "exit":  # risk-reducing: written ahead to the local spool
                return self.spool_write_ahead(msg)
            self.metrics.errors.labels("store_write").inc()
            log.error("write-ahead of {} refused: store down", o.client_order_id)
            return ack(WriteAhead.ERROR, f"durable store unavailable ({self.outage_reason})")
        if msg.deadline is not None and time.time() > msg.deadline:
            self.expired += 1
            self.metrics.errors.labels("write_ahead_expired").inc()
            log.error("write-ahead of {} past its deadline: not written", o.client_order_id)
            return ack(WriteAhead.EXPIRED, "past the write-ahead deadline")
        row = o.model_dump(mode="json")
        row.update(updated_at=o.created_at)
        try:
            with self.durable.group():  # a replay's: into the open group, no commit of its own
                inserted = self.durable.insert_once(
                    "orders", row, "client_order_id", ORDER_IDENTITY
                )
        except LedgerConflict as exc:
            self.conflict(exc)
            return ack(WriteAhead.CONFLICT, str(exc))
        except StoreError as exc:
            self.failed += 1
            self.metrics.errors.labels("store_write").inc()
            log.error("write-ahead of {} failed: {}", o.client_order_id, exc)
            if isinstance(exc, StoreUnavailable):
                self.outage(str(exc))
                if o.intent == "exit":
                    return self.spool_write_ahead(msg)
                # The INSERT may have landed before the link broke: the order is not sent,
                # so a row that did land is cancelled once the store is back (chaos C6).
                self.write(
                    WriteAheadExpired(
                        client_order_id=o.client_order_id,
                        reason=f"write-ahead outcome unknown ({exc}); never sent",
                        ts=self.clock.now(),
                    )
                )
            return ack(WriteAhead.ERROR, str(exc))
        self.writes += 1
        return ack(WriteAhead.NEW if inserted else WriteAhead.DUPLICATE)

    def spool_write_ahead(self, msg: WriteOrder) -> WriteAheadAck:
        """An exit (stop-loss, take-profit, liquidation) while the durable store is down:
        its write-ahead goes to the local spool (fsynced, replayed first when the store is
        back) so the position is not left unprotected; new entries still wait."""
        o = msg.order
        data = msg.model_copy(update={"deadline": None}).model_dump(mode="json")
        if not self.spool.append("WriteOrder", data):
            self.spool_refused += 1
            self.metrics.errors.labels("spool_full").inc()
            self.log.critical("spool full: exit {} NOT written, not sent", o.client_order_id)
            return ack(WriteAhead.ERROR, "durable store down and the spool is full")
        self.spooled += 1
        self.spooled_kinds["WriteOrder"] = self.spooled_kinds.get("WriteOrder", 0) + 1
        self.log.bind(event_id=o.event_id).warning(
            "write-ahead of exit {} spooled locally (durable store down)", o.client_order_id
        )
        return ack(WriteAhead.SPOOLED)

    def apply_WriteOrder(self, msg: WriteOrder) -> None:
        """A spooled write-ahead, replayed: the order was sent on the spool's promise."""
        row = msg.order.model_dump(mode="json")
        row.update(updated_at=msg.order.created_at)
        self.durable.insert_once("orders", row, "client_order_id", ORDER_IDENTITY)

    def on_WriteAheadExpired(self, msg: WriteAheadExpired) -> None:
        self.write(msg)

    def apply_WriteAheadExpired(self, msg: WriteAheadExpired) -> None:
        """Only a row still `new` (written after its asker gave up) is cancelled: an id
        the ledger held before, under any other status, is left as it is."""
        changed = self.durable.update(
            "orders",
            {"client_order_id": msg.client_order_id, "status": "new"},
            {"status": "cancelled", "error": msg.reason, "updated_at": msg.ts},
        )
        if changed:
            self.log.warning(
                "order {} written after its deadline: cancelled ({})",
                msg.client_order_id,
                msg.reason,
            )

    def on_OrderUpdate(self, u: OrderUpdate) -> None:
        self.write(u)

    def apply_updates(self, chain: list[OrderUpdate]) -> None:
        """One order's updates in a batch, each a legal move from the one before (e.g.
        accepted, then filled): one UPDATE with the last values of every column, made
        from the first one's statuses. When it changes no row, each is applied on its
        own, as they came: the ledger ends the same either way."""
        if len(chain) == 1:
            return self.apply_OrderUpdate(chain[0])
        changes: dict[str, Any] = {}
        for u in chain:
            changes.update(order_changes(u))
        first = chain[0]
        where = {"client_order_id": first.client_order_id, "status": FROM_STATUSES[first.status]}
        if self.durable.update("orders", where, changes):
            return None
        for u in chain:
            self.apply_OrderUpdate(u)
        return None

    def apply_OrderUpdate(self, u: OrderUpdate) -> None:
        # Only along the order state machine (execution/lifecycle.py): a late or replayed
        # update never moves a row back (e.g. `filled` to `accepted`).
        where = {"client_order_id": u.client_order_id, "status": FROM_STATUSES[u.status]}
        if self.durable.update("orders", where, order_changes(u)):
            return
        rows = self.durable.select("orders", {"client_order_id": u.client_order_id}, limit=1)
        if rows:
            self.metrics.errors.labels("order_status_refused").inc()
            self.log.warning(
                "order {}: {} -> {} is not a legal move; the ledger keeps {}",
                u.client_order_id,
                rows[0]["status"],
                u.status,
                rows[0]["status"],
            )

    def on_RecordFill(self, msg: RecordFill) -> None:
        self.write(msg)

    def apply_RecordFill(self, msg: RecordFill) -> None:
        self.durable.insert_once(
            "fills", msg.fill.model_dump(mode="json"), "fill_id", FILL_IDENTITY
        )

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
        self.durable.insert_once("decisions", decision_row(d), "decision_id", DECISION_IDENTITY)

    def on_SessionSave(self, s: SessionSave) -> None:
        self.write(s)

    def apply_SessionSave(self, s: SessionSave) -> None:
        self.durable.upsert("sessions", session_row(s), ("session_id",), add=("saves",))

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
        self.durable.insert("alerts", alert_row(a), ignore_conflict=True)

    # -- reads (raise StoreUnavailable during an outage; askers fall back) --------------

    def on_LoadState(self, msg: LoadState) -> DurableState:
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
        return DurableState(
            positions=positions,
            mode=mode_rows[0]["new"] if mode_rows else None,
            posture=json.loads(posture_rows[0]["value"]) if posture_rows else None,
            session=session,
        )

    def on_LoadLedger(self, _msg: LoadLedger) -> Ledger:
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
        # Exit ids count their attempts per position: a restart carries the count on, so
        # an exit written ahead but never sent is never re-minted under the same id.
        exit_attempts: dict[str, int] = {}
        for o in db.select("orders", {"intent": "exit"}):
            exit_attempts[o["symbol"]] = exit_attempts.get(o["symbol"], 0) + 1
        return Ledger(
            exit_attempts=exit_attempts,
            orders=orders,
            filled={k: v for k, v in filled.items() if k in keep},
            fill_ids={k: v for k, v in fill_ids.items() if k in keep},
        )

    def on_StoreHealth(self, _msg: StoreHealth) -> StoreHealthReply:
        return StoreHealthReply(
            up=not self.outage_reason, why=self.outage_reason, spool=len(self.spool)
        )

    def on_AckAlert(self, a: AckAlert) -> None:
        self.write(a)

    def apply_AckAlert(self, a: AckAlert) -> None:
        self.durable.update("alerts", {"alert_id": a.alert_id}, {"acked_at": a.ts})

    def on_KvGet(self, msg: KvGet) -> KvValue:
        """Small durable state (e.g. the calendar's last release); None when unknown or down."""
        try:
            rows = self.durable.select("kv", {"key": msg.key})
        except StoreError as exc:
            self.log.warning("kv {} unreadable: {}", msg.key, exc)
            return KvValue(key=msg.key)
        return KvValue(key=msg.key, value=json.loads(rows[0]["value"]) if rows else None)

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
            "conflicts": self.conflicts,
            "write_ahead_expired": self.expired,
            "received": {kind.__name__: n for kind, n in self.received.items()},
            "spooled_kinds": dict(self.spooled_kinds),
        }


def session_row(s: SessionSave) -> dict[str, Any]:
    row: dict[str, Any] = {
        "session_id": s.session_id,
        "opened_at": s.opened_at,
        "state": s.state,
        "saved_at": s.ts,
        "saves": 1,  # counted in SQL: one statement, no select before it
    }
    if s.closed_at is not None:
        row["closed_at"] = s.closed_at
    return row


def alert_row(a: Alert) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "level": a.level.value,
        "kind": a.kind,
        "message": a.message,
        "ts": a.ts,
    }


def runs(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows cut into runs of one set of columns, in their order (one statement each)."""
    out: list[list[dict[str, Any]]] = []
    for row in rows:
        if out and out[-1][0].keys() == row.keys():
            out[-1].append(row)
        else:
            out.append([row])
    return out


def order_changes(u: OrderUpdate) -> dict[str, Any]:
    """The columns an order update sets: its status and time, and what it carries."""
    changes: dict[str, Any] = {"status": u.status, "updated_at": u.ts}
    for key in ("broker_order_id", "filled_qty", "avg_fill_price", "error"):
        value = getattr(u, key)
        if value is not None:
            changes[key] = value
    return changes


def coalesce(batch: list[Msg]) -> list[Any]:
    """A batch as it is written: each order's run of updates that follow one another
    legally becomes one list (one UPDATE, `apply_updates`), and a position update that
    a later one for the same symbol supersedes (the row is wholly rewritten, or deleted)
    becomes None. Nothing else in a batch reads those rows, so the ledger is the same."""
    out: list[Any] = []
    chains: dict[str, list[OrderUpdate]] = {}
    positions: dict[str, int] = {}
    for msg in batch:
        kind = type(msg)
        if kind is OrderUpdate:
            assert isinstance(msg, OrderUpdate)
            chain = chains.get(msg.client_order_id)
            if chain is not None and chain[-1].status.value in FROM_STATUSES[msg.status]:
                chain.append(msg)
                continue
            chains[msg.client_order_id] = chain = [msg]
            out.append(chain)
            continue
        if kind is PositionUpdate:
            assert isinstance(msg, PositionUpdate)
            at = positions.get(msg.symbol)
            if at is not None:
                out[at] = None
            positions[msg.symbol] = len(out)
        elif kind is WriteAheadExpired:  # it moves a `new` row: no update chains over it
            assert isinstance(msg, WriteAheadExpired)
            chains.pop(msg.client_order_id, None)
        out.append(msg)
    return out


_DECISION_FIELDS = tuple(DecisionRecord.model_fields)
_N_DECISION_FIELDS = len(_DECISION_FIELDS)


def decision_row(d: DecisionRecord) -> dict[str, Any]:
    """The record's fields as they are: no model dump, no copy (the roles' answers in it
    are written as the JSON text of their dump by the row adapter, `json_text`). A
    model's `__dict__` holds exactly its fields (extra="forbid"), in declaration order;
    the store only reads the row it is given, so the record's own dict is the row."""
    row: dict[str, Any] = d.__dict__
    if len(row) != _N_DECISION_FIELDS:  # never expected; the slow, exact way
        return {k: getattr(d, k) for k in _DECISION_FIELDS}
    return row
