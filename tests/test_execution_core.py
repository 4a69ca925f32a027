"""Execution rules, one scenario each: modes, exits per posture at entry, the -2 % warning,
the data-mismatch tiers, current capital, and quality figures in status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aegis_actors.brokers.alpaca import AlpacaBroker
from aegis_actors.brokers.alpaca_sim import AlpacaSim
from aegis_actors.execution.core import ExecutionCore
from aegis_actors.messages import (
    Action,
    Alert,
    AlertLevel,
    ConfirmPrice,
    OrderUpdate,
    Outcome,
    PositionClosed,
    Posture,
    PriceConfirmation,
    RequestMode,
    Snapshot,
    Tick,
    TradingMode,
)
from aegis_actors.metrics import Metrics
from aegis_actors.runtime import POSTURE, STORE, VERIFIER, WATCHDOG
from aegis_actors.settings import Settings
from tests.execution_harness import Clock, Harness, Ports, Quiet


def opened(h: Harness, symbols: list[str], price: float = 100.0) -> None:
    for s in symbols:
        h.tick(s, price)
        d = h.decide(s)
        assert h.outcome(d).outcome is Outcome.ORDERED  # type: ignore[union-attr]
        h.tick(s, price)  # a limit at the last price fills on the next print
    assert sorted(h.core.positions) == sorted(symbols)


def test_entry_is_sized_on_current_capital_with_the_posture_in_force() -> None:
    h = Harness(Settings(posture={"mode": "auto"}), slippage_bps=0.0)
    h.tick("AAPL", 100.0)
    h.ports.posture = Posture.DEFENSIVE  # the decision was made under offensive
    h.decide("AAPL", posture=Posture.OFFENSIVE)
    ((_, order),) = h.broker.submitted
    assert order.qty == 15  # 1.5 % of 100,000 at 100, not offensive's 2.5 %
    h.broker._cash += 50_000.0  # capital grows (a deposit)
    h.tick("MSFT", 100.0)
    h.ports.posture = Posture.GUERRILLA
    h.decide("MSFT")
    assert h.broker.submitted[-1][1].qty == 29  # 2 % of 149,999 (a $1 fee paid) at 100
    h.broker._cash -= 60_000.0  # and falls 40 % under the day's start
    h.tick("NVDA", 100.0)
    d = h.decide("NVDA")
    assert len(h.broker.submitted) == 2
    assert h.outcome(d).detail.startswith("refused:daily_loss")  # type: ignore[union-attr]


def test_a_reversal_closes_first_then_enters_the_other_side_once() -> None:
    """A sell marked `reverse` against a held long: its exit is sent first, then the
    short entry, each once; the held position does not count against max_positions
    (it is being replaced). Without the mark, or on the held side, it is refused."""
    h = Harness()
    opened(h, ["AAPL", "MSFT", "NVDA"])  # guerrilla allows 3 positions: full
    long = h.core.positions["AAPL"].qty
    before = len(h.broker.submitted)
    for d in (h.decide("AAPL", Action.SELL), h.decide("AAPL", Action.BUY, reverse=True)):
        assert "already holding" in h.outcome(d).detail  # type: ignore[union-attr]
    d = h.decide("AAPL", Action.SELL, limit=100.0, reverse=True)
    assert h.outcome(d).outcome is Outcome.ORDERED  # type: ignore[union-attr]
    sent = [(o.side, o.qty) for _, o in h.broker.submitted[before:]]
    assert sent[0] == ("sell", long) and sent[1][0] == "sell" and len(sent) == 2
    h.tick("AAPL", 100.0)
    assert h.core.positions["AAPL"].qty == -sent[1][1]
    assert [c.reason for c in h.ports.of(PositionClosed)] == ["reverse"]
    h.core.decide(d)  # the same decision again: no order twice
    assert len(h.broker.submitted) == before + 2
    assert len(set(h.ports.ledger)) == len(h.ports.ledger) == before + 2


def test_exits_follow_the_posture_in_force_at_entry() -> None:
    h = Harness()
    h.ports.posture = Posture.OFFENSIVE
    opened(h, ["AAPL"])
    held = h.core.positions["AAPL"]
    assert held.posture is Posture.OFFENSIVE
    assert held.stop_loss == pytest.approx(held.avg_price * 0.985)
    assert held.take_profit == pytest.approx(held.avg_price * 1.03)
    h.ports.posture = Posture.DEFENSIVE  # defensive's -0.8 % stop must not apply
    h.tick("AAPL", held.avg_price * 0.99)
    assert "AAPL" in h.core.positions
    h.tick("AAPL", held.avg_price * 0.984)
    assert "AAPL" not in h.core.positions
    (closed,) = h.ports.of(PositionClosed, POSTURE)
    assert closed.reason == "stop_loss"


def test_take_profit_closes_and_reports() -> None:
    h = Harness()
    opened(h, ["AAPL"])
    h.tick("AAPL", 103.0)
    assert h.ports.of(PositionClosed)[0].reason == "take_profit"


def test_position_down_two_percent_raises_one_warning() -> None:
    h = Harness(
        Settings(
            posture={
                "guerrilla": {
                    "entry_size": 0.02,
                    "stop_loss": -0.05,
                    "take_profit": 0.05,
                    "max_positions": 3,
                    "limit_ratio": 1.0,
                }
            }
        )
    )
    opened(h, ["AAPL"])
    h.tick("AAPL", 98.5)
    assert not h.ports.of(Alert)
    h.tick("AAPL", 97.9)
    h.tick("AAPL", 97.5)
    (alert,) = h.ports.of(Alert, WATCHDOG)
    assert alert.level is AlertLevel.WARNING and alert.kind == "position_loss"


def test_limited_refuses_entries_cancels_resting_ones_and_still_exits() -> None:
    h = Harness()
    opened(h, ["AAPL"])
    h.tick("MSFT", 100.0)
    h.decide("MSFT", limit=95.0)  # rests below the market
    assert len(h.broker.open_orders()) == 1
    h.mode(TradingMode.LIMITED)
    assert h.broker.open_orders() == []
    h.tick("NVDA", 100.0)
    d = h.decide("NVDA")
    assert h.outcome(d).outcome is Outcome.REFUSED and "mode" in h.outcome(d).detail  # type: ignore[union-attr]
    h.tick("AAPL", 98.0)  # stop loss still managed
    assert "AAPL" not in h.core.positions and h.broker.positions() == []


def test_safe_cancels_closes_everything_and_snapshots() -> None:
    h = Harness()
    h.ports.posture = Posture.OFFENSIVE  # room for four
    opened(h, ["AAPL", "MSFT", "NVDA"])
    h.tick("AMZN", 100.0)
    h.decide("AMZN", limit=90.0)
    assert len(h.broker.open_orders()) == 1
    h.mode(TradingMode.SAFE)
    assert h.broker.open_orders() == [] and h.broker.positions() == []
    assert h.core.positions == {} and h.core.live == {}
    assert {c.reason for c in h.ports.of(PositionClosed)} == {"liquidation"}
    (snap,) = h.ports.of(Snapshot, STORE)
    assert snap.kind == "mode_safe"
    h.tick("TSLA", 100.0)
    d = h.decide("TSLA")
    assert h.outcome(d).outcome is Outcome.REFUSED  # type: ignore[union-attr]


def test_safe_retries_a_liquidation_the_rate_limit_refused() -> None:
    h = Harness(Settings(risk={"max_orders_per_minute": 3}))
    opened(h, ["AAPL", "MSFT", "NVDA"])  # three orders in this minute already
    h.mode(TradingMode.SAFE)
    assert len(h.broker.positions()) == 3
    h.advance(61.0)
    assert h.broker.positions() == [] and h.broker.open_orders() == []


def test_halted_sends_nothing_and_cancels_what_rests() -> None:
    h = Harness()
    opened(h, ["AAPL"])
    h.tick("MSFT", 100.0)
    h.decide("MSFT", limit=95.0)
    sent = len(h.broker.submitted)
    h.mode(TradingMode.HALTED)
    assert h.broker.open_orders() == []
    h.tick("AAPL", 90.0)  # through the stop: still nothing sent
    h.decide("NVDA")
    h.decide("AAPL", action=Action.CLOSE)
    h.advance(10.0)
    assert len(h.broker.submitted) == sent
    assert [p.symbol for p in h.broker.positions()] == ["AAPL"]


def test_shutdown_comes_after_safe() -> None:
    h = Harness()
    opened(h, ["AAPL", "MSFT"])
    h.mode(TradingMode.SHUTDOWN)
    assert h.core.mode is TradingMode.SHUTDOWN
    assert h.broker.positions() == [] and h.broker.open_orders() == []


def test_mismatch_under_half_a_percent_is_ignored() -> None:
    h = Harness()
    h.tick("AAPL", 100.0)
    h.broker.skew["AAPL"] = 1.004
    h.tick("AAPL", 100.0)
    d = h.decide("AAPL")
    assert h.outcome(d).outcome is Outcome.ORDERED  # type: ignore[union-attr]
    assert not h.ports.of(ConfirmPrice)


def test_mismatch_between_half_and_two_percent_needs_the_verifier() -> None:
    h = Harness()
    h.tick("AAPL", 100.0)
    h.broker.skew["AAPL"] = 1.01
    d = h.decide("AAPL")
    assert h.broker.submitted == [] and h.outcome(d) is None  # held
    (ask,) = h.ports.of(ConfirmPrice, VERIFIER)
    assert ask.symbol == "AAPL" and ask.diff_pct == pytest.approx(1.0)
    h.core.price_confirmed(
        PriceConfirmation(request_id=ask.request_id, symbol="AAPL", approve=True, reason="ok", ts=0)
    )
    assert len(h.broker.submitted) == 1
    assert h.outcome(d).outcome is Outcome.ORDERED  # type: ignore[union-attr]
    # refused confirmation on another symbol: no order, the event ends refused
    h.tick("MSFT", 100.0)
    h.broker.skew["MSFT"] = 0.99
    d2 = h.decide("MSFT")
    ask2 = h.ports.of(ConfirmPrice, VERIFIER)[-1]
    h.core.price_confirmed(
        PriceConfirmation(
            request_id=ask2.request_id, symbol="MSFT", approve=False, reason="no", ts=0
        )
    )
    assert len(h.broker.submitted) == 1
    assert "verifier did not confirm" in h.outcome(d2).detail  # type: ignore[union-attr]


def test_unanswered_confirmation_times_out_refused() -> None:
    h = Harness()
    h.tick("AAPL", 100.0)
    h.broker.skew["AAPL"] = 1.01
    d = h.decide("AAPL")
    h.advance(h.settings.roles.verifier.timeout_s + 1)
    assert h.broker.submitted == []
    assert h.outcome(d).outcome is Outcome.REFUSED  # type: ignore[union-attr]


def test_mismatch_over_two_percent_halts_with_a_severe_alert() -> None:
    h = Harness()
    opened(h, ["AAPL"])
    sent = len(h.broker.submitted)
    h.broker.skew["MSFT"] = 1.03
    h.tick("MSFT", 100.0)
    assert h.core.mode is TradingMode.HALTED
    (req,) = h.ports.of(RequestMode, WATCHDOG)
    assert req.target is TradingMode.HALTED and "MSFT" in req.reason
    severe = [a for a in h.ports.of(Alert) if a.level is AlertLevel.SEVERE]
    assert len(severe) == 1 and "manual check" in severe[0].message
    h.tick("MSFT", 100.0)  # one alert per episode
    assert len([a for a in h.ports.of(Alert) if a.level is AlertLevel.SEVERE]) == 1
    h.decide("MSFT")
    h.tick("AAPL", 90.0)
    assert len(h.broker.submitted) == sent


def test_write_ahead_failure_sends_nothing() -> None:
    h = Harness()
    h.tick("AAPL", 100.0)
    h.ports.store_down = True
    d = h.decide("AAPL")
    assert h.broker.submitted == [] and h.outcome(d).outcome is Outcome.FAILED  # type: ignore[union-attr]
    assert h.ports.of(RequestMode)[0].target is TradingMode.LIMITED


@pytest.fixture
def sim() -> Iterator[AlpacaSim]:
    s = AlpacaSim().start()
    yield s
    s.stop()


def rest_core(sim: AlpacaSim) -> tuple[ExecutionCore, Ports, Clock]:
    clock, ports = Clock(), Ports()
    broker = AlpacaBroker(
        sim.url, sim.key_id, sim.secret_key, retries=0, poll_every_s=0.0, clock_now=clock.now
    )
    core = ExecutionCore(broker, Settings(), clock.now, ports, Metrics(), Quiet())
    return core, ports, clock


def test_status_reports_success_rate_and_order_latency(sim: AlpacaSim) -> None:
    core, ports, clock = rest_core(sim)
    for s in ("AAPL", "MSFT", "NVDA"):
        sim.set_price(s, 100.0)
        core.tick(Tick(symbol=s, price=100.0, ts=clock.now()))
    h = Harness()
    h.core, h.ports, h.clock = core, ports, clock
    h.decide("AAPL")
    clock.t += 0.7  # the broker took 700 ms: past the 500 ms target, under the warning
    sim.fail("POST", "/v2/orders", 403)
    d = h.decide("MSFT")
    assert "forbidden" in h.outcome(d).detail  # type: ignore[union-attr]
    q = core.status()["execution"]
    assert q["sent"] == 2 and q["accepted"] == 1 and q["rejected"] == 1
    assert q["success_rate_pct"] == pytest.approx(50.0) and not q["success_ok"]
    assert q["order_to_accepted_ms"]["count"] == 1
    assert q["order_to_accepted_ms"]["sla_ms"]["target"] == 500
    rejected = [u for u in ports.of(OrderUpdate) if u.status == "rejected"]
    assert len(rejected) == 1 and "403" in (rejected[0].error or "")


def test_safe_over_the_rest_broker_ends_with_no_open_order(sim: AlpacaSim) -> None:
    core, ports, clock = rest_core(sim)
    h = Harness()
    h.core, h.ports, h.clock = core, ports, clock
    for s in ("AAPL", "MSFT"):
        sim.set_price(s, 100.0)
        h.tick(s, 100.0)
        h.decide(s)
    sim.set_price("NVDA", 100.0)
    h.tick("NVDA", 100.0)
    h.decide("NVDA", limit=90.0)
    assert len(sim.open_orders()) == 1 and len(sim.positions) == 2
    h.mode(TradingMode.SAFE)
    assert sim.open_orders() == [] and sim.positions == {}
    h.advance(5.0)
    assert core.positions == {} and core.live == {}
    assert sorted(sim.created.values()) == [1, 1, 1, 1, 1]  # 3 entries, 2 exits, none twice
    assert {c.reason for c in ports.of(PositionClosed)} == {"liquidation"}


def test_lost_submit_answer_is_resolved_and_the_ledger_kept_true(sim: AlpacaSim) -> None:
    core, ports, clock = rest_core(sim)
    h = Harness()
    h.core, h.ports, h.clock = core, ports, clock
    sim.set_price("AAPL", 100.0)
    h.tick("AAPL", 100.0)
    sim.fail("POST", "/v2/orders", "lost")
    sim.fail("GET", "/v2/orders:by_client_order_id", 503)
    d = h.decide("AAPL")
    assert h.outcome(d).outcome is Outcome.FAILED  # type: ignore[union-attr]
    assert [u.status for u in ports.of(OrderUpdate)] == ["unknown"]
    h.advance(5.0)  # the sweep asks the broker: still down, deferred
    assert [u.status for u in ports.of(OrderUpdate)] == ["unknown"]
    h.advance(5.0)  # it answers: it has the order, filled
    statuses = [u.status for u in ports.of(OrderUpdate)]
    assert "filled" in statuses and sim.created == {next(iter(sim.created)): 1}
    assert core.positions["AAPL"].qty == sim.positions["AAPL"][0]
    d2 = h.decide("AAPL")
    assert "already holding" in h.outcome(d2).detail  # type: ignore[union-attr]


def test_only_the_core_sends_orders_to_a_broker() -> None:
    """Pre-trade risk is in one place: no other module calls a broker's order entry."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "aegis_actors"
    callers = set()
    for path in root.rglob("*.py"):
        if path.parts[-2] == "brokers":
            continue  # the brokers themselves
        text = path.read_text(encoding="utf-8")
        if re.search(r"broker\w*\.(submit|close_all_positions)\(", text):
            callers.add(path.relative_to(root).as_posix())
    assert callers == {"execution/core.py"}


def test_a_broker_outage_fails_the_event_and_loses_nothing(sim: AlpacaSim) -> None:
    core, ports, clock = rest_core(sim)
    h = Harness()
    h.core, h.ports, h.clock = core, ports, clock
    sim.set_price("AAPL", 100.0)
    h.tick("AAPL", 100.0)
    h.decide("AAPL")
    sim.fail("GET", "/v2/account", 503)
    d = h.decide("MSFT")
    assert h.outcome(d).outcome is Outcome.FAILED  # type: ignore[union-attr]
    assert "broker unavailable" in h.outcome(d).detail  # type: ignore[union-attr]
    sim.fail("GET", "/v2/", 503, count=50)  # everything down during the sweep: deferred
    h.advance(70.0)
    sim.faults.clear()
    sim.set_price("AAPL", 103.0)
    h.tick("AAPL", 103.0)  # take profit once it is back
    h.advance(5.0)
    assert sim.positions == {} and core.positions == {}
    assert len(h.fills()) == 2 and all(n == 1 for n in sim.created.values())


def test_the_posture_in_force_follows_the_cache_document() -> None:
    """Execution reads the posture document per entry, parsed again only when its text
    changed: each change is seen, a missing or unreadable one is no posture."""
    from types import SimpleNamespace

    from aegis_actors.cache import MemoryCache
    from aegis_actors.execution.actor import Execution
    from aegis_actors.messages import Posture

    cache = MemoryCache()
    actor = SimpleNamespace(rt=SimpleNamespace(cache=cache), _posture=None)

    def read() -> Posture | None:
        return Execution.current_posture(actor)  # type: ignore[arg-type]

    assert read() is None
    cache.set_json("posture", {"posture": "offensive"})
    assert read() is Posture.OFFENSIVE and read() is Posture.OFFENSIVE
    cache.set_json("posture", {"posture": "defensive", "params": {}})
    assert read() is Posture.DEFENSIVE
    cache.set_json("posture", {"posture": "nonsense"})
    assert read() is None
    cache.set_json("posture", {})
    assert read() is None
    cache.set_json("posture", {"posture": "guerrilla"})
    assert read() is Posture.GUERRILLA
    cache.delete("posture")
    assert read() is None
