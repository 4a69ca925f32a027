"""The watchdog on the virtual clock: each alert condition fires at its level and only then,
escalation steps at 5/10/15 min stop on ack, severe halts, a hung actor is restarted."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest
from alerts_receivers import Webhook
from conftest import wait_until

from aegis_actors.base import AegisActor
from aegis_actors.context import K_ACCOUNT
from aegis_actors.messages import (
    CONTEXT,
    DONE,
    T0,
    AckAlert,
    AckReply,
    Alert,
    AlertLevel,
    Analysis,
    DecisionRecord,
    Direction,
    EventDone,
    GetStatus,
    ModeChange,
    Outcome,
    SetPosture,
    Verdict,
)
from aegis_actors.runtime import ANALYST, POSTURE, ROLES, STORE, WATCHDOG, Runtime
from aegis_actors.settings import load_settings
from aegis_actors.tree import actor, event_sink, subscribe
from aegis_actors.watchdog.actor import Watchdog
from supervisors import Directory, Policy, start_tree, supervisor_spec
from supervisors.clock import VirtualClock

HUNG: set[str] = set()  # actor URNs that settle() does not wait for


def settle(timeout: float = 5.0) -> None:
    """Every mailbox empty twice in a row, except a deliberately hung actor's."""
    quiet = 0
    deadline = time.monotonic() + timeout
    while quiet < 2:
        busy = any(
            not ref.actor_inbox.empty()
            for ref in pykka.ActorRegistry.get_all()
            if ref.actor_urn not in HUNG
        )
        quiet = 0 if busy else quiet + 1
        if time.monotonic() > deadline:
            pytest.fail("actors did not settle")
        time.sleep(0.002)


class Recorder(AegisActor):
    """Stands in for posture / store: keeps what it was told."""

    seen: list[Any]

    def on_start(self) -> None:
        self.seen = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, GetStatus):
            return {"seen": list(self.seen)}
        self.seen.append(message)
        return None


class Hanger(AegisActor):
    """An actor whose `Block` handler never returns until the test lets it go."""

    gate = threading.Event()

    def on_Alert(self, _msg: Alert) -> None:
        self.gate.wait(30)


class Plodder(AegisActor):
    """A busy actor: each `Alert` takes until the test lets one more through."""

    step = threading.Semaphore(0)

    def on_Alert(self, _msg: Alert) -> None:
        self.step.acquire(timeout=30)


CONTACTS = {
    "first": [{"name": "eng", "email": "eng@desk", "phone": "+1001"}],
    "second": [{"name": "arch", "email": "arch@desk", "phone": "+1002"}],
    "third": [{"name": "cto", "email": "cto@desk", "phone": "+1003"}],
}


class Desk:
    def __init__(self, rt: Runtime, clock: VirtualClock, events: list[dict[str, Any]]) -> None:
        self.rt, self.clock, self.events = rt, clock, events

    def tell(self, msg: Any) -> None:
        self.rt.directory.tell(WATCHDOG, msg)
        settle()

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.rt.directory.ask(WATCHDOG, GetStatus(), 5)
        return result

    def seen(self, name: str) -> list[Any]:
        return list(self.rt.directory.ask(name, GetStatus(), 5)["seen"])

    def advance(self, seconds: float, step: float = 30.0) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.now()))
            settle()

    def alerts(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e for e in self.events if e["type"] == "alert" and (kind is None or e["kind"] == kind)
        ]


@pytest.fixture
def hook() -> Iterator[Webhook]:
    w = Webhook()
    yield w
    w.close()


@pytest.fixture
def make_desk(vclock: VirtualClock, hook: Webhook, tmp_path: Any) -> Iterator[Callable[..., Desk]]:
    roots: list[Any] = []

    def make(hang: bool = False, hanger: type = Hanger, **watchdog: Any) -> Desk:
        settings = load_settings(
            None,
            run={"log_dir": str(tmp_path)},
            watchdog={"heartbeat_every_s": 5.0, "heartbeat_timeout_s": 2.0, **watchdog},
            alerts={
                "sms_url": hook.url + "/sms",
                "phone_url": hook.url + "/phone",
                "retry_backoff_s": 0.01,
                **CONTACTS,
            },
        )
        rt = Runtime(settings=settings, clock=vclock, directory=Directory())
        subscribe(rt)  # the tree's fan-outs (mode changes to posture and store)
        events: list[dict[str, Any]] = []
        rt.event_sinks.append(events.append)
        children = [
            actor(STORE, Recorder, rt),
            actor(WATCHDOG, Watchdog, rt),
            actor(POSTURE, Recorder, rt),
        ]
        if hang:
            Hanger.gate.clear()
            children.append(
                supervisor_spec(
                    ROLES,
                    [actor(ANALYST, hanger, rt, shutdown_timeout_s=0.2)],
                    Policy(),
                    on_event=event_sink(rt),
                )
            )
        root = start_tree("root", children, Policy(), clock=vclock, directory=rt.directory)
        rt.tree = lambda: root.snapshot(timeout=3.0)
        roots.append(root)
        settle()
        return Desk(rt, vclock, events)

    yield make
    Hanger.gate.set()
    for _ in range(100):
        Plodder.step.release()
    for root in roots:
        root.stop(timeout=10)


def done(
    event: str, outcome: Outcome = Outcome.HOLD, *, detect_ms: float = 10, cycle_ms: float = 100
) -> EventDone:
    t0 = 1000.0
    return EventDone(
        event_id=event,
        symbol="AAPL",
        outcome=outcome,
        stamps={T0: t0, CONTEXT: t0 + detect_ms / 1000, DONE: t0 + cycle_ms / 1000},
    )


def test_two_consecutive_sla_warnings_raise_one_warning(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    d.tell(done("e1", detect_ms=150))  # past warning (100 ms), not critical (200 ms)
    assert d.alerts("latency_sla") == []
    d.tell(done("e2", detect_ms=10))  # ok: the streak resets
    d.tell(done("e3", detect_ms=150))
    assert d.alerts("latency_sla") == []
    d.tell(done("e4", detect_ms=120))
    [alert] = d.alerts("latency_sla")
    assert alert["level"] == "warning" and "detect_to_analysis" in alert["message"]


def test_one_event_past_critical_fails_that_event(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    d.tell(done("e1", Outcome.ORDERED, cycle_ms=10_500))  # whole cycle past 10 s
    st = d.status()
    assert st["outcomes"] == {"failed": 1}
    assert st["failure_streak"] == 1


def test_three_consecutive_system_errors_are_critical_and_force_defensive(
    make_desk: Callable[..., Desk],
) -> None:
    d = make_desk()
    d.tell(done("e1", Outcome.FAILED))
    d.tell(done("e2", Outcome.TIMEOUT))
    d.tell(done("e3", Outcome.HOLD))  # a success breaks the streak
    d.tell(done("e4", Outcome.FAILED))
    d.tell(done("e5", Outcome.FAILED))
    assert d.alerts("consecutive_failures") == []
    d.tell(done("e6", Outcome.FAILED))
    [alert] = d.alerts("consecutive_failures")
    assert alert["level"] == "critical"
    forced = [m for m in d.seen(POSTURE) if isinstance(m, SetPosture)]
    assert len(forced) == 1 and forced[0].posture == "defensive"


def test_minute_loss_limit_is_critical_once(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 100_000.0})
    d.advance(10, step=1)
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 99_200.0})  # -0.8 %: under the 1 % limit
    d.advance(5, step=1)
    assert d.alerts("minute_loss") == []
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 98_900.0})  # -1.1 % within the minute
    d.advance(5, step=1)
    [alert] = d.alerts("minute_loss")
    assert alert["level"] == "critical"
    assert d.status()["mode"] == "normal"  # critical alerts, it does not halt


def test_five_percent_capital_loss_is_severe_and_halts(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 95_500.0})  # -4.5 %
    d.advance(3, step=1)
    assert d.alerts("capital_loss") == [] and d.status()["mode"] == "normal"
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 94_900.0})  # -5.1 %
    d.advance(2, step=1)
    [alert] = d.alerts("capital_loss")
    assert alert["level"] == "severe"
    assert d.status()["mode"] == "halted"
    changes = [m for m in d.seen(STORE) if isinstance(m, ModeChange)]
    assert [(c.old, c.new) for c in changes] == [("normal", "halted")]


def test_data_integrity_violation_is_severe_and_halts(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    d.tell(
        Alert(
            alert_id="mm-1",
            level=AlertLevel.SEVERE,
            kind="data_integrity",
            message="broker qty 10 vs store 12",
            ts=d.clock.now(),
        )
    )
    assert d.status()["mode"] == "halted"


def test_daily_target_info_once_a_day(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()  # target 1 % of 100k; info at 80 % of it = +800
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 100_000.0})
    d.advance(2, step=1)
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 100_700.0})
    d.advance(2, step=1)
    assert d.alerts("daily_target") == []
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 100_850.0})
    d.advance(2, step=1)
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 100_900.0})
    d.advance(2, step=1)
    [alert] = d.alerts("daily_target")
    assert alert["level"] == "info"


def test_posture_change_is_an_info_alert(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    d.tell(
        Alert(
            alert_id="posture-1",
            level=AlertLevel.INFO,
            kind="posture_change",
            message="posture guerrilla -> defensive: vix 27",
            ts=d.clock.now(),
        )
    )
    [alert] = d.alerts("posture_change")
    assert alert["level"] == "info"
    assert d.status()["escalating"] == []  # info does not escalate


def test_escalation_steps_at_5_10_15_minutes(make_desk: Callable[..., Desk], hook: Webhook) -> None:
    d = make_desk()
    d.tell(done("e1", Outcome.FAILED))
    d.tell(done("e2", Outcome.FAILED))
    d.tell(done("e3", Outcome.FAILED))  # critical: SMS + phone to the 1st responder
    wait_until(lambda: len(hook.of("/sms")) == 1 and len(hook.of("/phone")) == 1)
    assert hook.of("/sms")[0]["to"] == "+1001"

    def sms_to() -> list[str]:
        return [p["to"] for p in hook.of("/sms")]

    d.advance(299)
    assert sms_to() == ["+1001"]
    d.advance(1)  # 5 min: 2nd
    wait_until(lambda: sms_to() == ["+1001", "+1002"])
    d.advance(599)
    assert sms_to() == ["+1001", "+1002"]
    d.advance(1)  # +10 min: 3rd
    wait_until(lambda: sms_to() == ["+1001", "+1002", "+1003"])
    d.advance(899)
    assert len(sms_to()) == 3
    d.advance(1)  # +15 min: everyone
    wait_until(lambda: sorted(sms_to()[3:]) == ["+1001", "+1002", "+1003"])
    d.advance(3600)
    assert len(sms_to()) == 6  # nothing after "everyone"
    assert [e["step"] for e in d.events if e["type"] == "escalation"] == [1, 2, 3]


def test_ack_stops_escalation(make_desk: Callable[..., Desk], hook: Webhook) -> None:
    d = make_desk()
    for i in range(3):
        d.tell(done(f"e{i}", Outcome.FAILED))
    alert_id = d.alerts("consecutive_failures")[0]["alert_id"]
    d.advance(300)  # 2nd tier reached
    wait_until(lambda: len(hook.of("/sms")) == 2)
    reply = d.rt.directory.ask(WATCHDOG, AckAlert(alert_id=alert_id, by="arch"), 5)
    assert reply == AckReply(ok=True, alert_id=alert_id, escalation_step=1)
    d.advance(3600)
    assert len(hook.of("/sms")) == 2
    assert d.status()["escalating"] == []
    assert [a["acked"] for a in d.status()["alerts"] if a["alert_id"] == alert_id] == [True]
    unknown = d.rt.directory.ask(WATCHDOG, AckAlert(alert_id="al-nope"), 5)
    assert isinstance(unknown, AckReply) and unknown.ok is False and "al-nope" in unknown.error
    settle()
    acks = [m for m in d.seen(STORE) if isinstance(m, AckAlert)]  # the ack goes to the ledger
    assert [(a.alert_id, a.by) for a in acks] == [(alert_id, "arch")] and acks[0].ts > 0


def test_severe_sends_sms_three_times_and_phone(
    make_desk: Callable[..., Desk], hook: Webhook
) -> None:
    d = make_desk()
    d.rt.cache.set_json(K_ACCOUNT, {"equity": 90_000.0})
    d.advance(2, step=1)
    wait_until(lambda: len(hook.of("/sms")) == 3 and len(hook.of("/phone")) == 1)
    assert [p["copy"] for p in hook.of("/sms")] == [1, 2, 3]
    assert all(p["to"] == "+1001" and "capital_loss" in p["text"] for p in hook.of("/sms"))


def test_flapping_condition_is_deduplicated(make_desk: Callable[..., Desk], hook: Webhook) -> None:
    d = make_desk()
    for i in range(100):  # a flapping disk/link: the same critical condition over and over
        d.rt.directory.tell(
            WATCHDOG,
            Alert(
                alert_id=f"x{i}",
                level=AlertLevel.CRITICAL,
                kind="store_down",
                message=f"store unreachable for {i} s",
                ts=d.clock.now(),
            ),
        )
    settle()
    assert len(d.alerts("store_down")) == 1
    wait_until(lambda: len(hook.of("/sms")) == 1)
    d.advance(301, step=60)  # past the window: the next one goes out, with the count
    d.tell(
        Alert(
            alert_id="x100",
            level=AlertLevel.CRITICAL,
            kind="store_down",
            message="store unreachable for 400 s",
            ts=d.clock.now(),
        )
    )
    wait_until(lambda: any("99 repeats suppressed" in p["text"] for p in hook.of("/sms")))
    assert d.rt.metrics.value("aegis_alerts_suppressed_total", {"level": "critical"}) == 99


def test_hung_actor_is_restarted_by_its_supervisor(make_desk: Callable[..., Desk]) -> None:
    d = make_desk(hang=True)
    first = d.rt.directory.get(ANALYST)
    assert first is not None
    HUNG.add(first.actor_urn)
    d.rt.directory.tell(
        ANALYST, Alert(alert_id="b", level=AlertLevel.INFO, kind="x", message="x", ts=0)
    )  # the analyst now blocks in its handler
    d.advance(5 + 2, step=1)  # one missed beat: a warning in the log only
    assert d.alerts("heartbeat") == [] and d.rt.directory.get(ANALYST) is first
    d.advance(5, step=1)  # the second missed beat: hung
    [alert] = d.alerts("heartbeat")
    assert "analyst" in alert["message"] and "hung" in alert["message"]
    wait_until(lambda: d.rt.directory.get(ANALYST) not in (None, first), timeout=10, what="restart")
    wait_until(lambda: d.status()["hung"] == {"analyst": 1})
    restarts = [e for e in d.events if e["type"] == "supervisor" and e["kind"].endswith("restart")]
    assert restarts and restarts[0]["child"] == ANALYST
    Hanger.gate.set()
    d.advance(20, step=1)  # the new instance answers: no more heartbeat alerts
    assert len(d.alerts("heartbeat")) == 1


def test_busy_actor_making_progress_is_not_restarted_as_hung(
    make_desk: Callable[..., Desk],
) -> None:
    """Heartbeats queue behind a backlog: late, but the actor keeps handling messages, so
    it is busy (counted), not hung; once it stops making progress it is hung."""
    Plodder.step = threading.Semaphore(0)
    d = make_desk(hang=True, hanger=Plodder)
    first = d.rt.directory.get(ANALYST)
    assert first is not None
    HUNG.add(first.actor_urn)
    for i in range(10):  # a backlog: each message takes until the test lets it through
        d.rt.directory.tell(
            ANALYST, Alert(alert_id=f"b{i}", level=AlertLevel.INFO, kind="x", message="x", ts=0)
        )
    progress = d.rt.progress[ANALYST]
    for _ in range(4):  # four beats, each answered late, with progress in between
        d.advance(5, step=1)  # a beat is asked (it waits behind the backlog)
        before = progress[0]
        Plodder.step.release()
        wait_until(lambda b=before: progress[0] > b, what="one message handled")
        d.advance(2, step=1)  # the check: not answered, but progress was made
    assert d.alerts("heartbeat") == [] and d.rt.directory.get(ANALYST) is first
    assert d.rt.metrics.value("aegis_heartbeat_busy_total", {"actor": ANALYST}) >= 3
    d.advance(5 + 2 + 5 + 2, step=1)  # no progress for two beats: now it is hung
    [alert] = d.alerts("heartbeat")
    assert "analyst" in alert["message"] and "hung" in alert["message"]
    for _ in range(20):
        Plodder.step.release()


def record(decision_id: str, direction: str, *, vetoed: bool, price: float, ts: float) -> Any:
    return DecisionRecord(
        decision_id=decision_id,
        event_id="ev-" + decision_id,
        symbol="AAPL",
        analysis=Analysis(
            event_id="ev-" + decision_id,
            symbol="AAPL",
            direction=Direction(direction),
            expected_move_pct=0.5,
            confidence=0.7,
            risk_score=0.1,
        ),
        verdict=Verdict(
            event_id="ev-" + decision_id, symbol="AAPL", approve=not vetoed, confidence=0.9
        ),
        decision=None,
        vetoed=vetoed,
        confidence=None,
        outcome="vetoed" if vetoed else "hold",
        latency_ms={},
        created_at=ts,
    )


def test_accuracy_is_judged_on_later_prices(make_desk: Callable[..., Desk]) -> None:
    d = make_desk()
    now = d.clock.now()
    d.rt.cache.push_price("AAPL", 100.0, now)
    d.tell(record("d1", "up", vetoed=False, price=100.0, ts=now))  # right: it rises
    d.tell(record("d2", "down", vetoed=False, price=100.0, ts=now))  # wrong
    d.tell(record("d3", "up", vetoed=True, price=100.0, ts=now))  # veto hit: it would have lost?
    d.advance(100)
    d.rt.cache.push_price("AAPL", 101.0, d.clock.now())
    d.advance(199)
    assert d.status()["accuracy"]["analysis_judged"] == 0  # horizon not reached
    d.advance(2)
    acc = d.status()["accuracy"]
    assert acc["analysis_judged"] == 3 and acc["analysis_accuracy"] == pytest.approx(2 / 3)
    assert acc["vetoes_judged"] == 1 and acc["veto_hit_rate"] == 0.0  # the veto cost a gain
    assert d.status()["confidence"]["analyst"]["n"] == 3


def test_latency_anomaly_raises_a_warning(make_desk: Callable[..., Desk]) -> None:
    d = make_desk(anomaly_min_samples=20)
    for i in range(30):
        d.rt.directory.tell(WATCHDOG, done(f"e{i}", cycle_ms=4000 + (i % 5) * 50))
    settle()
    assert d.alerts("anomaly") == []
    d.tell(done("slow", cycle_ms=9000))  # far off its norm, under critical
    [alert] = d.alerts("anomaly")
    assert alert["level"] == "warning" and "latency:cycle" in alert["message"]


def test_accuracy_targets_alert_once_per_dip_on_a_scripted_stream(
    make_desk: Callable[..., Desk],
) -> None:
    """SPEC 5.3: prediction accuracy under 65 % with enough samples is a warning alert,
    raised once when it dips (not on every judgment), and again after a recovery."""
    d = make_desk(accuracy_min_samples=5, accuracy_horizon_s=60.0)

    def calls(*directions: str) -> None:
        d.rt.cache.push_price("AAPL", 100.0, d.clock.now())
        for direction in directions:
            d.tell(record(f"c{uuid.uuid4().hex[:6]}", direction, vetoed=False, price=100.0, ts=0))
        d.advance(1)
        d.rt.cache.push_price("AAPL", 101.0, d.clock.now())  # the market rises: "up" was right
        d.advance(61, step=1)

    def below() -> float:
        return d.rt.metrics.value("aegis_accuracy_below_target", {"kind": "analysis"})

    calls("up", "up", "down", "down")  # 50 %, but 4 judged: too few to judge
    target = next(t for t in d.status()["accuracy"]["targets"] if t["kind"] == "analysis")
    assert target["status"] == "too_few" and target["samples"] == 4
    assert d.alerts("accuracy_target") == [] and below() == 0
    calls("up")  # 3 of 5: 60 %
    [alert] = d.alerts("accuracy_target")
    assert alert["level"] == "warning"
    assert "prediction accuracy 60.0% is below its 65% target" in alert["message"]
    assert below() == 1
    calls("up", "up", "up", "up", "up")  # 8 of 10: met again, no new alert
    assert below() == 0 and len(d.alerts("accuracy_target")) == 1
    assert d.rt.metrics.value("aegis_accuracy_target_ratio", {"kind": "analysis"}) == 0.65
    d.advance(300)  # past the alert de-duplication window (a repeat inside it is counted only)
    calls(*["down"] * 6)  # 8 of 16: a second dip, a second alert
    assert len(d.alerts("accuracy_target")) == 2 and below() == 1


def test_execution_success_under_target_alerts(make_desk: Callable[..., Desk]) -> None:
    d = make_desk(accuracy_min_samples=20)
    d.rt.metrics.order("accepted", 19)
    d.advance(2, step=1)
    assert d.alerts("accuracy_target") == []  # 19 orders: too few to judge
    d.rt.metrics.order("rejected")
    d.advance(2, step=1)
    [alert] = d.alerts("accuracy_target")
    assert "execution success 95.0% is below its 99.5% target" in alert["message"]
    t = next(t for t in d.status()["accuracy"]["targets"] if t["kind"] == "execution")
    assert t["status"] == "below" and t["samples"] == 20


def test_stage_histograms_count_exactly_as_hdr_record_value() -> None:
    """The watchdog's inlined recording gives the same histogram (every bucket, count,
    min and max) as HdrHistogram.record_value, from sub-microsecond to past an hour."""
    import random

    from hdrh.histogram import HdrHistogram

    from aegis_actors.watchdog.sla import HIGHEST_US, StageHistograms

    rnd = random.Random(13)
    values = [0.0, 0.0004, 0.001, 2.047, 2.048, 4.095, 4.096, 5e9] + [
        rnd.lognormvariate(1.0, 2.5) for _ in range(20_000)
    ]
    ours, ref = StageHistograms(), HdrHistogram(1, HIGHEST_US, 3)
    for ms in values:
        ours.record("cycle", ms)
        ref.record_value(max(1, min(HIGHEST_US, int(ms * 1000.0))))
    h = ours._h["cycle"]
    assert list(h.counts) == list(ref.counts)
    assert (h.total_count, h.min_value, h.max_value) == (
        ref.total_count,
        ref.min_value,
        ref.max_value,
    )
    assert ours.summary()["cycle"]["p99_ms"] == ref.get_value_at_percentile(99) / 1000.0


def test_turn_observer_counts_as_prometheus_observe() -> None:
    """Stage latencies counted per turn land in the same prometheus buckets (edges
    included) and sum as observing each value at once would."""
    import random

    from prometheus_client import CollectorRegistry, Histogram

    from aegis_actors.metrics import _MS_BUCKETS
    from aegis_actors.watchdog.sla import TurnObserver

    def child() -> tuple[Any, CollectorRegistry]:
        reg = CollectorRegistry()
        h = Histogram("lat", "x", ["stage"], buckets=_MS_BUCKETS, registry=reg)
        return h.labels("cycle"), reg

    (direct, reg_a), (bulk, reg_b) = child(), child()
    turns = TurnObserver(bulk)
    rnd = random.Random(13)
    values = [0.0, *map(float, _MS_BUCKETS)] + [rnd.lognormvariate(1.0, 3.0) for _ in range(3000)]
    for i, ms in enumerate(values):
        direct.observe(ms)
        turns.observe(ms)
        if i % 37 == 0:
            turns.flush()
    turns.flush()

    def samples(reg: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for m in reg.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        }

    a, b = samples(reg_a), samples(reg_b)
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert b[key] == pytest.approx(value), key


def test_stage_watch_counts_as_its_three_parts() -> None:
    """`StageWatch.take` (what the watchdog calls per stage per event) leaves the stage's
    HdrHistogram, prometheus turn counts and z-score history exactly as
    `StageHistograms.record`, `TurnObserver.observe` and `ZScore.add` would, and scores
    (against the history before the value) exactly the values at or past the target."""
    import random

    from prometheus_client import CollectorRegistry, Histogram

    from aegis_actors.metrics import _MS_BUCKETS
    from aegis_actors.watchdog.anomaly import ZScore
    from aegis_actors.watchdog.sla import STAGES, StageHistograms, StageWatch, TurnObserver

    def parts() -> tuple[StageHistograms, TurnObserver, ZScore]:
        h = Histogram("lat", "x", ["stage"], buckets=_MS_BUCKETS, registry=CollectorRegistry())
        return StageHistograms(), TurnObserver(h.labels("order")), ZScore(50, 10)

    sla = STAGES["order"][2]
    (hist_a, obs_a, z_a), (hist_b, obs_b, z_b) = parts(), parts()
    watch = StageWatch("order", sla, hist_b, obs_b, z_b)
    rnd = random.Random(7)
    values = [0.0, 0.0004, sla.target_ms, 5e9] + [rnd.lognormvariate(5.0, 1.5) for _ in range(3000)]
    scored = 0
    for ms in values:
        want = z_a.score(ms) if ms >= sla.target_ms else None
        hist_a.record("order", ms)
        obs_a.observe(ms)
        z_a.add(ms)
        got = watch.take(ms)
        assert got == want
        scored += got is not None
    assert scored > 100  # past the target often enough, and past min_samples
    ha, hb = hist_a._h["order"], hist_b._h["order"]
    assert list(ha.counts) == list(hb.counts)
    assert (ha.total_count, ha.min_value, ha.max_value) == (
        hb.total_count,
        hb.min_value,
        hb.max_value,
    )
    assert hist_a.summary() == hist_b.summary()
    assert (obs_a.counts, obs_a.total, obs_a.n) == (obs_b.counts, obs_b.total, obs_b.n)
    assert (list(z_a.values), z_a.total, z_a.squares) == (list(z_b.values), z_b.total, z_b.squares)


def test_stage_histograms_read_again_only_what_moved() -> None:
    """A summary recomputes a stage's percentiles when it recorded since the last read
    (and keeps the others' figures): the same figures as reading every stage each time."""
    from aegis_actors.watchdog.sla import StageHistograms

    hist = StageHistograms()
    assert hist.summary()["cycle"] == {"count": 0, "p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    for ms in (1.0, 2.0, 3.0):
        hist.record("cycle", ms)
    first = hist.summary()
    assert first["cycle"]["count"] == 3 and first["order"]["count"] == 0
    hist.record("order", 40.0)
    second = hist.summary()
    assert second["cycle"] == first["cycle"]
    assert second["order"]["count"] == 1 and second["order"]["p99_ms"] == pytest.approx(40.0, 1e-3)
    hist.record("cycle", 500.0)
    assert hist.summary()["cycle"]["count"] == 4
    assert hist.summary()["cycle"]["p99_ms"] == pytest.approx(500.0, 1e-3)
