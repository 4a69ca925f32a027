"""The store actor on SQLite and real PostgreSQL: write-ahead answers, state reads, and a
durable-store outage (a proxy in front of PostgreSQL cut and restored): no order written,
the watchdog goes `limited`, writes spooled and replayed in order, spool survives restart."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import settle, wait_until
from tcp_proxy import TcpProxy, proxied_dsn

from aegis_actors.messages import (
    AckAlert,
    Action,
    Alert,
    AlertLevel,
    Analysis,
    Decision,
    DecisionRecord,
    Direction,
    DurableState,
    GetStatus,
    KvGet,
    KvValue,
    Ledger,
    LoadLedger,
    LoadState,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Posture,
    RecordFill,
    SessionSave,
    Side,
    StoreHealth,
    StoreHealthReply,
    TradingMode,
    Verdict,
    WriteAhead,
    WriteAheadAck,
    WriteOrder,
    WrongReply,
)
from aegis_actors.messages import Fill as FillMsg
from aegis_actors.runtime import STORE, WATCHDOG, Runtime
from aegis_actors.settings import load_settings
from aegis_actors.store import open_database
from aegis_actors.store.actor import _TOLD_WRITES, Store
from aegis_actors.tree import actor, subscribe
from aegis_actors.watchdog.actor import Watchdog
from supervisors import Directory, Policy, RootHandle, inline, start_tree
from supervisors.clock import VirtualClock


def order(n: int, ts: float) -> Order:
    return Order(
        client_order_id=f"coid-{n}",
        decision_id=f"d-{n}",
        event_id=f"e-{n}",
        symbol="AAPL",
        side=Side.BUY,
        qty=10.0,
        order_type=OrderType.LIMIT,
        limit_price=100.0,
        created_at=ts,
    )


def decision(n: int, ts: float) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"d-{n}",
        event_id=f"e-{n}",
        symbol="AAPL",
        analysis=None,
        verdict=None,
        decision=None,
        vetoed=False,
        confidence=None,
        outcome="hold",
        latency_ms={"whole_cycle": 1.0},
        created_at=ts,
    )


def spine_decision(n: int, ts: float) -> DecisionRecord:
    """A record as the commander writes one (tests of the batch's rows, byte for byte):
    the roles' answers, their provenance, a veto, floats of every kind."""
    stamps = {"t0": ts, "context": ts + 0.0066, "analysis": ts + 1 / 3}
    return DecisionRecord.trusted(
        decision_id=f"d-{n}",
        event_id=f"e-{n}",
        symbol="AAPL",
        analysis=Analysis(
            event_id=f"e-{n}",
            stamps=stamps,
            symbol="AAPL",
            direction=Direction.UP,
            expected_move_pct=-0.0,
            confidence=0.665,
            risk_score=1 / 3,
        ),
        verdict=Verdict(
            event_id=f"e-{n}",
            symbol="AAPL",
            approve=n % 2 == 0,
            reasons=["checks passed", "é ✓"],
            confidence=0.9,
        ),
        decision=Decision(
            event_id=f"e-{n}",
            decision_id=f"d-{n}",
            symbol="AAPL",
            action=Action.BUY,
            size_fraction=1e-7,
            limit_price=103.975,
            stop_loss=None,
            confidence=0.665,
            posture=Posture.GUERRILLA,
            reference_price=103.975,
            meta={"tokens_in": 12, "cost_usd": 1.5e-5},
        ),
        vetoed=n % 2 == 1,
        confidence=0.665,
        outcome="decided",
        latency_ms={"detect_to_analysis": 6.641, "analysis": 1.019},
        created_at=ts,
        prompt_versions={"analyst": "rules.v2", "verifier": "rules.v2"},
        models={"analyst": "rules"},
        tokens={"analyst": {"input": 12, "output": n}},
        cost_usd=1.5e-5,
        analysis_confidence=0.665,
        verdict_confidence=None,
    )


StartStore = Callable[..., tuple[Runtime, RootHandle]]


@pytest.fixture
def start_store(
    aegis_env: Path, vclock: VirtualClock
) -> Iterator[Callable[..., tuple[Runtime, RootHandle]]]:
    roots: list[RootHandle] = []

    def start(**store: Any) -> tuple[Runtime, RootHandle]:
        store.setdefault("sqlite_path", str(aegis_env / "var" / "aegis.db"))
        store.setdefault("spool_path", str(aegis_env / "var" / "spool.db"))
        settings = load_settings(None, store=store, run={"log_dir": str(aegis_env / "logs")})
        directory = Directory()
        rt = Runtime(settings=settings, clock=vclock, directory=directory)
        subscribe(rt)  # the tree's fan-outs: mode changes reach the store
        root = start_tree(
            "root",
            [actor(STORE, Store, rt), actor(WATCHDOG, Watchdog, rt)],
            Policy(),
            clock=vclock,
            directory=directory,
        )
        roots.append(root)
        settle()
        return rt, root

    yield start
    for root in roots:
        if not root.wait(0):
            root.stop(timeout=5)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def durable(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    return {"postgres_dsn": request.getfixturevalue("pg_dsn")}


def ask(rt: Runtime, msg: Any) -> Any:
    return rt.directory.ask(STORE, msg, 5.0)


def test_a_told_write_is_handled_by_write_whether_dispatched_or_not() -> None:
    """The store hands each told write to `write` without the dispatch table (the event
    path's cost): that is what each one's handler does, so nothing is skipped."""
    for kind in _TOLD_WRITES:
        written: list[Any] = []
        msg = object()
        getattr(Store, f"on_{kind.__name__}")(SimpleNamespace(write=written.append), msg)
        assert written == [msg], kind


def test_write_ahead_answers_new_then_duplicate(
    start_store: StartStore, durable: dict[str, str], vclock: VirtualClock
) -> None:
    rt, _ = start_store(**durable)
    assert ask(rt, WriteOrder(order=order(1, vclock.now()))).status is WriteAhead.NEW
    assert ask(rt, WriteOrder(order=order(1, vclock.now()))).status is WriteAhead.DUPLICATE
    ledger = ask(rt, LoadLedger())
    assert [o["client_order_id"] for o in ledger.orders] == ["coid-1"]
    assert ledger.filled == {"coid-1": 0.0}


def test_each_ask_is_answered_by_its_reply_model_and_a_wrong_type_fails_loudly(
    start_store: StartStore, vclock: VirtualClock
) -> None:
    rt, _ = start_store()
    ack = rt.ask(STORE, WriteOrder(order=order(1, vclock.now())), 5.0, WriteAheadAck)
    assert ack == WriteAheadAck(status=WriteAhead.NEW) and ack.written and str(ack) == "new"
    again = rt.ask(STORE, WriteOrder(order=order(1, vclock.now())), 5.0, WriteAheadAck)
    assert again.status is WriteAhead.DUPLICATE and not again.written
    ledger = rt.ask(STORE, LoadLedger(), 5.0, Ledger)
    assert [o["client_order_id"] for o in ledger.orders] == ["coid-1"]
    state = rt.ask(STORE, LoadState(symbol=""), 5.0, DurableState)
    assert state.positions == {} and state.session is None
    assert rt.ask(STORE, KvGet(key="nothing"), 5.0, KvValue) == KvValue(key="nothing")
    assert rt.ask(STORE, StoreHealth(), 5.0, StoreHealthReply) == StoreHealthReply(up=True)
    with pytest.raises(WrongReply, match="store answered StoreHealth with StoreHealthReply, "):
        rt.ask(STORE, StoreHealth(), 5.0, WriteAheadAck)  # never read as something else


def test_state_read_has_the_open_session_and_fills_are_summed(
    start_store: StartStore, durable: dict[str, str], vclock: VirtualClock
) -> None:
    rt, _ = start_store(**durable)
    now = vclock.now()
    rt.directory.tell(
        STORE, SessionSave(session_id="ss-1", opened_at=now - 200, state={}, ts=now, closed_at=now)
    )
    rt.directory.tell(
        STORE, SessionSave(session_id="ss-2", opened_at=now - 5, state={"decisions": 4}, ts=now)
    )
    assert ask(rt, WriteOrder(order=order(1, now))).status is WriteAhead.NEW
    for i, qty in enumerate((4.0, 6.0)):
        fill = FillMsg(
            fill_id=f"f-{i}",
            client_order_id="coid-1",
            symbol="AAPL",
            side=Side.BUY,
            qty=qty,
            price=100.0,
            fee=1.0,
            ts=now,
        )
        rt.directory.tell(STORE, RecordFill(fill=fill))
        rt.directory.tell(STORE, RecordFill(fill=fill))  # a replayed fill is not doubled
    state = ask(rt, LoadState(symbol="AAPL"))
    assert state.session["session_id"] == "ss-2"
    assert state.session["state"] == {"decisions": 4}
    assert ask(rt, LoadLedger()).filled == {"coid-1": 10.0}


@pytest.fixture
def pg_proxy(pg_dsn: str) -> Iterator[tuple[TcpProxy, str]]:
    """A cuttable proxy in front of the per-test PostgreSQL database, and its DSN."""
    proxy, dsn = proxied_dsn(pg_dsn)
    yield proxy, dsn
    proxy.close()


def decisions_in(dsn: str) -> list[str]:
    db = open_database(postgres_dsn=dsn)
    try:
        return [r["decision_id"] for r in db.select("decisions", order_by="id")]
    finally:
        db.close()


@pytest.mark.integration
def test_outage_refuses_orders_goes_limited_and_replays_in_order(
    start_store: StartStore, pg_proxy: tuple[TcpProxy, str], pg_dsn: str, vclock: VirtualClock
) -> None:
    proxy, dsn = pg_proxy
    rt, _ = start_store(postgres_dsn=dsn, retry_initial_s=1.0)
    rt.directory.tell(STORE, decision(0, vclock.now()))
    # written (committed), not only taken from the mailbox, before the cut
    wait_until(lambda: decisions_in(pg_dsn) == ["d-0"], what="d-0 committed")
    proxy.cut()
    for n in range(1, 6):
        rt.directory.tell(STORE, decision(n, vclock.now()))
    answer = ask(rt, WriteOrder(order=order(1, vclock.now())))
    assert answer.status is WriteAhead.ERROR
    wait_until(lambda: rt.cache.get_json("mode") == TradingMode.LIMITED.value, what="limited")
    settle()
    # 5 decisions, plus the mode change and alerts, written while the store is down.
    spooled = ask(rt, StoreHealth())
    assert spooled.up is False and spooled.spool >= 7
    vclock.advance(1.0)  # a retry while still down: nothing lost, nothing sent
    settle()
    assert ask(rt, StoreHealth()).spool == spooled.spool
    assert decisions_in(pg_dsn) == ["d-0"]
    proxy.restore()
    vclock.advance(2.0)  # the next retry (backoff doubled to 2 s)
    settle()
    assert ask(rt, StoreHealth()) == StoreHealthReply(up=True)
    assert decisions_in(pg_dsn) == [f"d-{n}" for n in range(6)]
    assert ask(rt, WriteOrder(order=order(2, vclock.now()))).status is WriteAhead.NEW
    rt.directory.tell(STORE, decision(6, vclock.now()))
    settle()
    assert decisions_in(pg_dsn)[-1] == "d-6"
    db = open_database(postgres_dsn=pg_dsn)
    assert [r["client_order_id"] for r in db.select("orders")] == ["coid-2"]
    assert [(r["old"], r["new"]) for r in db.select("mode_changes")] == [("normal", "limited")]
    db.close()


@pytest.mark.integration
def test_spool_survives_a_restart_and_is_replayed_at_start(
    start_store: StartStore, pg_proxy: tuple[TcpProxy, str], pg_dsn: str, vclock: VirtualClock
) -> None:
    proxy, dsn = pg_proxy
    rt, root = start_store(postgres_dsn=dsn)
    proxy.cut()
    for n in range(4):
        rt.directory.tell(STORE, decision(n, vclock.now()))
    # The four decisions, and possibly the watchdog's own writes about the outage (the
    # mode change to limited and its alert) that arrive while the store is down.
    wait_until(lambda: ask(rt, StoreHealth()).spool >= 4, timeout=20)
    root.stop(timeout=5)
    proxy.restore()
    rt2, _ = start_store(postgres_dsn=dsn)

    def healthy() -> bool:
        # On a loaded machine the first connect may still fail; the store then retries on
        # its (virtual) clock, which the test moves on.
        vclock.advance(1.0)
        settle()
        return bool(ask(rt2, StoreHealth()) == StoreHealthReply(up=True))

    wait_until(healthy, timeout=20, what="store up with the spool replayed")
    assert decisions_in(pg_dsn) == [f"d-{n}" for n in range(4)]


@pytest.mark.integration
def test_store_down_at_start_spools_then_catches_up(
    start_store: StartStore, pg_proxy: tuple[TcpProxy, str], pg_dsn: str, vclock: VirtualClock
) -> None:
    proxy, dsn = pg_proxy
    proxy.cut()
    rt, _ = start_store(postgres_dsn=dsn, retry_initial_s=1.0)
    rt.directory.tell(STORE, decision(0, vclock.now()))
    assert ask(rt, WriteOrder(order=order(1, vclock.now()))).status is WriteAhead.ERROR
    proxy.restore()
    vclock.advance(1.0)
    settle()
    assert ask(rt, StoreHealth()).up is True
    assert decisions_in(pg_dsn) == ["d-0"]


def test_spool_is_bounded_and_counts_what_it_refuses(
    start_store: StartStore, vclock: VirtualClock, aegis_env: Path
) -> None:
    # A PostgreSQL port nobody listens on: the store is down from the start.
    proxy = TcpProxy("127.0.0.1", 5432)
    proxy.cut()
    rt, _ = start_store(postgres_dsn=f"postgresql://postgres@127.0.0.1:{proxy.port}/x", spool_max=3)
    for n in range(5):
        rt.directory.tell(STORE, decision(n, vclock.now()))
    settle()
    status = ask(rt, GetStatus())
    # 5 decisions plus the watchdog's mode change and alert: 3 kept, the rest refused.
    assert (status["spool"], status["spooled"]) == (3, 3)
    assert status["spool_refused"] >= 2
    assert rt.metrics.errors.labels("spool_full")._value.get() == status["spool_refused"]


def test_an_acknowledged_alert_is_marked_in_the_ledger(
    start_store: StartStore, durable: dict[str, str], aegis_env: Path, vclock: VirtualClock
) -> None:

    rt, _ = start_store(**durable)
    now = vclock.now()
    rt.directory.tell(
        STORE,
        Alert(
            alert_id="al-1", level=AlertLevel.CRITICAL, kind="x", message="three failures", ts=now
        ),
    )
    rt.directory.tell(STORE, AckAlert(alert_id="al-1", by="arch", ts=now + 42.0))
    settle()
    db = open_database(
        sqlite_path=str(aegis_env / "var" / "aegis.db"),
        postgres_dsn=durable.get("postgres_dsn", ""),
    )
    try:
        (row,) = db.select("alerts", {"alert_id": "al-1"})
        assert row["acked_at"] == now + 42.0
    finally:
        db.close()


def test_a_batched_decision_under_a_known_id_is_a_conflict_never_skipped(
    start_store: StartStore, durable: dict[str, str], vclock: VirtualClock, aegis_env: Path
) -> None:
    """Decisions are written in batches; a clash on decision_id still gets the ledger's rule:
    the same row again is a no-op, a different row is an error with a metric (issue 11)."""
    rt, _ = start_store(**durable)
    first = decision(1, vclock.now())
    for n in (1, 2):
        rt.directory.tell(STORE, decision(n, vclock.now()))
    settle()
    rt.directory.tell(STORE, first)  # the very same record again (a replayed spool entry)
    rt.directory.tell(STORE, first.model_copy(update={"event_id": "e-other"}))  # another event
    rt.directory.tell(STORE, decision(3, vclock.now()))
    settle()
    conflicts = rt.metrics.errors.labels("ledger_conflict")._value.get()
    assert conflicts == 1
    assert ask(rt, GetStatus())["conflicts"] == 1
    db = open_database(**(durable or {"sqlite_path": str(aegis_env / "var" / "aegis.db")}))
    try:
        rows = {r["decision_id"]: r["outcome"] for r in db.select("decisions")}
    finally:
        db.close()
    # The first record stands; the batch after the clash was still written.
    assert rows == {"d-1": "hold", "d-2": "hold", "d-3": "hold"}


def test_a_busy_store_groups_decisions_but_commits_a_fill_at_the_end_of_its_turn(
    start_store: StartStore, vclock: VirtualClock, aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit under load: a decision told soon after the last commit waits (up to
    the linger) for more; a fill is never kept waiting, and takes the waiting decision
    with it in its transaction."""
    monkeypatch.setattr(Store, "linger_s", 3.0)  # long: a waiting write is plainly seen
    rt, _ = start_store()
    db = open_database(sqlite_path=str(aegis_env / "var" / "aegis.db"))
    handled = rt.progress[STORE]

    def decisions() -> set[str]:
        return {r["decision_id"] for r in db.select("decisions")}

    try:
        assert ask(rt, WriteOrder(order=order(1, vclock.now()))).status is WriteAhead.NEW
        rt.directory.tell(STORE, decision(1, vclock.now()))
        wait_until(lambda: decisions() == {"d-1"}, timeout=10)  # at once, or after the linger
        before = handled[0]
        rt.directory.tell(STORE, decision(2, vclock.now()))  # just committed: busy, it waits
        wait_until(lambda: handled[0] > before)
        assert decisions() == {"d-1"}
        fill = FillMsg(
            fill_id="f-1",
            client_order_id="coid-1",
            symbol="AAPL",
            side=Side.BUY,
            qty=10.0,
            price=100.0,
            fee=1.0,
            ts=vclock.now(),
        )
        rt.directory.tell(STORE, RecordFill(fill=fill))  # money: committed now, not in 3 s
        wait_until(lambda: db.select("fills"), timeout=2.0)
        assert decisions() == {"d-1", "d-2"}
    finally:
        db.close()


def test_a_write_ahead_commits_the_held_writes_with_the_order_row_in_one_transaction(
    aegis_env: Path, vclock: VirtualClock
) -> None:
    """In a replay the store's writes are held to the end of the bar; a write-ahead asked
    meanwhile commits them and its order row together (one commit), before it answers. A
    held write the ledger refuses rolls that back: the batch is then written one by one
    (the conflict reported) and the order row on its own, still before the answer."""
    path = str(aegis_env / "var" / "aegis.db")
    settings = load_settings(
        None,
        store={"sqlite_path": path, "spool_path": str(aegis_env / "var" / "spool.db")},
        run={"log_dir": str(aegis_env / "logs")},
    )
    with inline.install(inline.Scheduler(deferred=(Store,))) as sched:
        directory = Directory()
        rt = Runtime(settings=settings, clock=vclock, directory=directory)
        subscribe(rt)
        root = start_tree(
            "root",
            [actor(STORE, Store, rt), actor(WATCHDOG, Watchdog, rt)],
            Policy(),
            clock=vclock,
            directory=directory,
        )
        sched.run()
        ref = directory.get(STORE)
        assert ref is not None
        durable = ref.actor_inbox.actor.durable
        commits: list[str] = []  # transactions and autocommitted writes
        real_tx, real_execute = durable.transaction, durable._execute

        def transaction(**kw: Any) -> Any:
            commits.append("tx")
            return real_tx(**kw)

        def execute(sql: str, params: Any, *, retry: bool) -> Any:
            if not durable._in_tx and not sql.startswith("SELECT"):
                commits.append(sql)
            return real_execute(sql, params, retry=retry)

        durable.transaction, durable._execute = transaction, execute
        db = open_database(sqlite_path=path)
        try:
            with sched.holding():
                directory.tell(STORE, decision(1, vclock.now()))
                directory.tell(STORE, decision(2, vclock.now()))
                sched.run()
                ack = rt.ask(STORE, WriteOrder(order=order(1, vclock.now())), 5.0, WriteAheadAck)
                assert ack.status is WriteAhead.NEW and commits == ["tx"]
                # committed before the answer: another connection reads both
                assert [r["decision_id"] for r in db.select("decisions")] == ["d-1", "d-2"]
                assert [r["client_order_id"] for r in db.select("orders")] == ["coid-1"]
                other = decision(1, vclock.now()).model_copy(update={"event_id": "e-other"})
                directory.tell(STORE, other)  # a clash: the joint commit is rolled back
                directory.tell(STORE, decision(3, vclock.now()))
                sched.run()
                ack = rt.ask(STORE, WriteOrder(order=order(2, vclock.now())), 5.0, WriteAheadAck)
                assert ack.status is WriteAhead.NEW
                assert [r["client_order_id"] for r in db.select("orders")] == ["coid-1", "coid-2"]
                assert {r["decision_id"] for r in db.select("decisions")} == {"d-1", "d-2", "d-3"}
            assert directory.ask(STORE, GetStatus(), 5.0)["conflicts"] == 1
        finally:
            db.close()
            root.stop()


LEDGER_TABLES = ("orders", "positions", "fills", "decisions", "sessions", "alerts")


def random_writes(rng: random.Random) -> list[Any]:
    """Told writes of every kind a batch treats apart: order updates (legal moves and
    refused ones, rows that exist and rows that do not), position updates, fills (a
    replayed one, and one that clashes with the ledger), decisions (plain and as the
    spine writes them; a replayed one, and one that clashes), session saves, alerts and
    their acknowledgements."""
    msgs: list[Any] = []
    statuses = list(OrderStatus)
    for i in range(rng.randint(3, 30)):
        kind = rng.random()
        if kind < 0.45:
            msgs.append(
                OrderUpdate(
                    client_order_id=f"coid-{rng.choice((1, 1, 2, 9))}",
                    status=rng.choice(statuses),
                    ts=10.0 + i,
                    broker_order_id=rng.choice((None, f"b-{i}")),
                    filled_qty=rng.choice((None, float(i))),
                    avg_fill_price=rng.choice((None, 100.0 + i)),
                    error=rng.choice((None, None, f"e{i}")),
                )
            )
        elif kind < 0.6:
            msgs.append(
                PositionUpdate(
                    symbol=rng.choice(("AAPL", "MSFT")),
                    qty=rng.choice((0.0, 5.0, -3.0)),
                    avg_price=100.0 + i,
                    ts=10.0 + i,
                    opened_at=rng.choice((None, 5.0)),
                    posture=rng.choice((None, Posture.GUERRILLA)),
                    stop_loss=rng.choice((None, 90.0)),
                )
            )
        elif kind < 0.75:
            n = rng.choice((1, 2, 3, i))
            price = 100.0 if rng.random() < 0.9 else 101.0  # now and then a clash
            fill = FillMsg(
                fill_id=f"f-{n}",
                client_order_id=f"coid-{rng.choice((1, 2))}",
                symbol="AAPL",
                side=Side.BUY,
                qty=10.0,
                price=price,
                fee=1.0,
                ts=10.0 + i,
            )
            msgs.append(RecordFill(fill=fill))
        elif kind < 0.83:
            msgs.append(rng.choice((decision, spine_decision))(rng.choice((100 + i, 1)), 10.0 + i))
        elif kind < 0.92:
            msgs.append(
                SessionSave(
                    session_id=f"s-{rng.choice((1, 2))}",
                    opened_at=1.0,
                    state={"n": i},
                    ts=10.0 + i,
                    closed_at=rng.choice((None, None, 10.0 + i)),
                )
            )
        elif kind < 0.97:
            msgs.append(
                Alert(
                    alert_id=f"a-{rng.choice((1, 2, i))}",
                    level=AlertLevel.WARNING,
                    kind="test",
                    message=f"m{i}",
                    ts=10.0 + i,
                )
            )
        else:
            msgs.append(AckAlert(alert_id=f"a-{rng.choice((1, 2))}", by="t", ts=10.0 + i))
    return msgs


def test_a_batch_writes_the_same_ledger_as_one_write_at_a_time(
    aegis_env: Path, vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held batch merges each order's run of updates into one UPDATE, keeps only the
    last position update per symbol, and writes each of the fills, decisions, sessions
    and alerts in one executemany; a replay's grouped ledger keeps them over many
    write-aheads. Random runs of every kind leave the ledger as writing them one at a
    time does, committed one by one, in a held batch, or in a replay's group."""

    def run(msgs: list[Any], mode: str, name: str) -> dict[str, Any]:
        path = str(aegis_env / "var" / f"{name}.db")
        store: dict[str, Any] = {
            "sqlite_path": path,
            "spool_path": str(aegis_env / "var" / f"{name}.spool"),
        }
        feed: dict[str, Any] = {}
        if mode == "grouped":
            store.update(sqlite_synchronous="normal", sqlite_commit_every=4)
            feed = {"kind": "replay", "replay_file": "bars.csv"}
        settings = load_settings(
            None, store=store, feed=feed, run={"log_dir": str(aegis_env / "logs")}
        )
        with inline.install(inline.Scheduler(deferred=(Store,))) as sched:
            directory = Directory()
            rt = Runtime(settings=settings, clock=vclock, directory=directory)
            root = start_tree(
                "root", [actor(STORE, Store, rt)], Policy(), clock=vclock, directory=directory
            )
            sched.run()
            for n in (1, 2):
                assert ask(rt, WriteOrder(order=order(n, 1.0))).status is WriteAhead.NEW
            if mode == "single":  # the reference: each write by its own apply_<kind>
                with monkeypatch.context() as mp:
                    mp.setattr(Store, "apply_batch", lambda self, b: [*map(self.apply, b)])
                    for msg in msgs:
                        directory.tell(STORE, msg)
                        sched.run()  # each one flushed alone
                    ask(rt, WriteOrder(order=order(3, 1.0)))
            else:
                with sched.holding():
                    for k, msg in enumerate(msgs):
                        directory.tell(STORE, msg)
                        if k % 7 == 6:  # write-aheads in between: a group takes them all
                            ask(rt, WriteOrder(order=order(10 + k, 1.0)))
                    sched.run()
                    ask(rt, WriteOrder(order=order(3, 1.0)))  # takes them in its transaction
            conflicts = ask(rt, GetStatus())["conflicts"]  # each clash reported, once
            root.stop()
        db = open_database(sqlite_path=path)
        try:
            keys = {"positions": "symbol", "sessions": "session_id"}
            ledger = {t: db.select(t, order_by=keys.get(t, "id")) for t in LEDGER_TABLES}
            ledger["orders"] = [  # the write-aheads in between aside (and so the row ids)
                {k: v for k, v in o.items() if k != "id"}
                for o in ledger["orders"]
                if int(o["client_order_id"][5:]) < 10
            ]
            return {**ledger, "conflicts": conflicts}
        finally:
            db.close()

    for seed in range(30):
        msgs = random_writes(random.Random(seed))
        one_by_one = run(msgs, "single", f"single-{seed}")
        assert run(msgs, "held", f"held-{seed}") == one_by_one, seed
        assert run(msgs, "grouped", f"grouped-{seed}") == one_by_one, seed
