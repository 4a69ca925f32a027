"""Postures (SPEC 3): VIX bounds, trend/volatility tie-breakers near them, hysteresis, the
30-minute evaluation on the virtual clock, operator override, and the 3-stop-loss rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from stand_ins import Recorder

from aegis_actors.cache import MemoryCache
from aegis_actors.messages import (
    Alert,
    AlertLevel,
    GetPosture,
    PositionClosed,
    Posture,
    PostureChange,
    PostureReply,
    SetPosture,
    VolatilityIndex,
)
from aegis_actors.metrics import Metrics
from aegis_actors.posture import Indicators, PostureActor, evaluate, indicators
from aegis_actors.runtime import POSTURE, STORE, WATCHDOG, Runtime
from aegis_actors.settings import Settings
from supervisors import ChildSpec, Directory, Policy, Strategy, start_tree
from supervisors.clock import VirtualClock
from tests.conftest import wait_until

OFF, GUE, DEF = Posture.OFFENSIVE, Posture.GUERRILLA, Posture.DEFENSIVE
CALM_TREND = Indicators(trend_pct=1.0, vol_pct=0.1)
CHOPPY = Indicators(trend_pct=0.0, vol_pct=0.3)
FALLING = Indicators(trend_pct=-1.0, vol_pct=0.2)
UNCLEAR = Indicators(trend_pct=0.4, vol_pct=0.2)  # between the votes near 15
UNCLEAR_HIGH = Indicators(trend_pct=-0.4, vol_pct=0.3)  # between the votes near 25


@pytest.mark.parametrize(
    ("vix", "current", "want"),
    [(10.0, GUE, OFF), (20.0, OFF, GUE), (30.0, GUE, DEF), (30.0, OFF, DEF), (12.0, DEF, OFF)],
)
def test_clear_of_the_bounds_the_vix_decides(vix: float, current: Posture, want: Posture) -> None:
    assert evaluate(vix, current, 15, 25, 1.0, CHOPPY)[0] is want


def test_near_a_bound_trend_and_volatility_break_the_tie() -> None:
    assert evaluate(15.5, GUE, 15, 25, 1.0, CALM_TREND)[0] is OFF  # strong trend, calm
    assert evaluate(14.5, OFF, 15, 25, 1.0, CHOPPY)[0] is GUE  # sideways, choppy
    assert evaluate(24.5, GUE, 15, 25, 1.0, FALLING)[0] is DEF  # falling market
    assert evaluate(25.5, DEF, 15, 25, 1.0, Indicators(0.0, 0.1))[0] is GUE


def test_near_a_bound_unclear_indicators_hold_the_posture() -> None:
    for current in (OFF, GUE):
        assert evaluate(14.8, current, 15, 25, 1.0, UNCLEAR)[0] is current
        assert evaluate(15.2, current, 15, 25, 1.0, Indicators())[0] is current
    for current in (GUE, DEF):
        assert evaluate(25.3, current, 15, 25, 1.0, UNCLEAR_HIGH)[0] is current


def test_hovering_on_a_bound_never_flaps() -> None:
    posture, changes = GUE, 0
    for i in range(200):
        vix = 15.0 + (0.9 if i % 2 else -0.9)
        new, _why = evaluate(vix, posture, 15, 25, 1.0, UNCLEAR)
        changes += new is not posture
        posture = new
    assert changes == 0


def test_indicators_from_prices() -> None:
    up = indicators([100.0, 100.5, 101.0, 101.5, 102.0])
    assert up.trend_pct == pytest.approx(2.0)
    assert up.vol_pct is not None and up.vol_pct < 0.01
    assert indicators([100.0]) == Indicators()


# -- the actor on the virtual clock -------------------------------------------------------


@pytest.fixture
def posture_tree(vclock: VirtualClock) -> Iterator[Any]:
    made: list[Any] = []

    def make(**posture: Any) -> tuple[Any, Runtime, list[Any]]:
        got: list[Any] = []
        directory = Directory()
        rt = Runtime(
            settings=Settings(posture=posture),
            clock=vclock,
            directory=directory,
            cache=MemoryCache(),
            metrics=Metrics(),
        )
        specs = [
            ChildSpec(STORE, lambda ctx: Recorder.start(ctx, rt, got)),
            ChildSpec(WATCHDOG, lambda ctx: Recorder.start(ctx, rt, got)),
            ChildSpec(POSTURE, lambda ctx: PostureActor.start(ctx, rt)),
        ]
        handle = start_tree(
            "root", specs, Policy(strategy=Strategy.ONE_FOR_ONE), clock=vclock, directory=directory
        )
        made.append(handle)
        return handle, rt, got

    yield make
    for h in made:
        h.stop()


def status(rt: Runtime) -> dict[str, Any]:
    from aegis_actors.messages import GetStatus

    return rt.directory.ask(POSTURE, GetStatus(), 5.0)  # type: ignore[no-any-return]


def test_evaluates_every_30_minutes_with_hysteresis(posture_tree: Any, vclock: Any) -> None:
    _h, rt, got = posture_tree()
    d = rt.directory
    d.tell(POSTURE, VolatilityIndex(value=20.0, ts=0))  # first reading: evaluated at once
    assert wait_until(lambda: status(rt)["evaluations"] == 1)
    assert status(rt)["posture"] == "guerrilla"
    d.tell(POSTURE, VolatilityIndex(value=14.5, ts=1))  # inside the band: no change yet
    d.tell(POSTURE, VolatilityIndex(value=12.0, ts=2))  # clear of it, but not evaluated yet
    vclock.advance(1799.0)
    assert status(rt)["posture"] == "guerrilla" and status(rt)["evaluations"] == 1
    vclock.advance(1.0)
    assert wait_until(lambda: status(rt)["posture"] == "offensive")
    changes = wait_until(lambda: [m for m in got if isinstance(m, PostureChange)])
    assert changes[0].old is GUE and changes[0].new is OFF and "scheduled" in changes[0].reason
    info = wait_until(lambda: [m for m in got if isinstance(m, Alert)])
    assert info[0].kind == "posture_change" and info[0].level is AlertLevel.INFO
    d.tell(POSTURE, VolatilityIndex(value=15.6, ts=3))  # back over 15 but within the band
    vclock.advance(1800.0)
    wait_until(lambda: status(rt)["evaluations"] == 3)
    assert status(rt)["posture"] == "offensive"
    d.tell(POSTURE, VolatilityIndex(value=16.5, ts=4))
    vclock.advance(1800.0)
    assert wait_until(lambda: status(rt)["posture"] == "guerrilla")


def test_rt_cache_holds_the_posture_and_its_numbers(posture_tree: Any) -> None:
    _h, rt, _got = posture_tree()
    rt.directory.tell(POSTURE, VolatilityIndex(value=30.0, ts=0))
    wait_until(lambda: status(rt)["posture"] == "defensive")
    doc = rt.cache.get_json("posture")
    assert doc["posture"] == "defensive"
    assert doc["params"] == {
        "entry_size": 0.015,
        "stop_loss": -0.008,
        "take_profit": 0.018,
        "max_positions": 2,
        "limit_ratio": 1.0,
    }


def test_operator_override_and_back_to_auto(posture_tree: Any, vclock: Any) -> None:
    _h, rt, _got = posture_tree()
    d = rt.directory
    d.tell(POSTURE, VolatilityIndex(value=20.0, ts=0))
    reply = d.ask(POSTURE, SetPosture(posture=OFF, reason="desk call", operator=True), 5.0)
    assert reply == PostureReply(posture=Posture.OFFENSIVE, override=Posture.OFFENSIVE)
    d.tell(POSTURE, VolatilityIndex(value=35.0, ts=1))
    vclock.advance(1800.0)
    wait_until(lambda: status(rt)["evaluations"] >= 2)
    assert status(rt)["posture"] == "offensive"  # the override holds against the VIX
    held = rt.ask(POSTURE, GetPosture(), 5.0, PostureReply)
    assert held.posture is Posture.OFFENSIVE and held.override is Posture.OFFENSIVE
    reply = d.ask(POSTURE, SetPosture(posture=None, reason="auto", operator=True), 5.0)
    assert reply == PostureReply(posture=Posture.DEFENSIVE, override=None)


def test_three_stop_losses_force_defensive_for_the_cooldown(posture_tree: Any, vclock: Any) -> None:
    _h, rt, got = posture_tree(forced_cooldown_s=3600.0)
    d = rt.directory
    d.tell(POSTURE, VolatilityIndex(value=10.0, ts=0))
    wait_until(lambda: status(rt)["posture"] == "offensive")

    def closed(reason: str) -> None:
        d.tell(POSTURE, PositionClosed(symbol="X", reason=reason, pnl=-1, pnl_pct=-1, ts=0))

    closed("stop_loss")
    closed("stop_loss")
    closed("take_profit")  # breaks the streak
    closed("stop_loss")
    closed("stop_loss")
    wait_until(lambda: status(rt)["stop_loss_streak"] == 2)
    assert status(rt)["posture"] == "offensive"
    closed("stop_loss")
    wait_until(lambda: status(rt)["posture"] == "defensive")
    forced = wait_until(lambda: [m for m in got if isinstance(m, PostureChange) and m.new is DEF])
    assert "3 consecutive stop-losses" in forced[0].reason
    vclock.advance(1800.0)  # evaluation inside the cool-down: held
    wait_until(lambda: status(rt)["evaluations"] >= 2)
    assert status(rt)["posture"] == "defensive"
    vclock.advance(1800.0)  # the next evaluation after the cool-down hands back to the VIX
    assert wait_until(lambda: status(rt)["posture"] == "offensive")
