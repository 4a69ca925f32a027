"""Trading modes (ARCHITECTURE.md): automatic moves only go up, leaving safe/halted takes
an operator, nothing leaves shutdown, and shutdown comes after safe."""

from __future__ import annotations

import pytest

from aegis_actors.messages import TradingMode as M
from aegis_actors.watchdog.modes import ModeMachine


@pytest.mark.parametrize("target", [M.LIMITED, M.SAFE, M.HALTED])
def test_automatic_moves_go_up(target: M) -> None:
    m = ModeMachine()
    move = m.request(target, operator=False)
    assert move.ok and m.mode is target and move.steps == (target,)


@pytest.mark.parametrize("start", [M.LIMITED, M.SAFE, M.HALTED])
def test_automatic_moves_never_come_down(start: M) -> None:
    m = ModeMachine(start)
    for target in (M.NORMAL, M.LIMITED, M.SAFE):
        if target.rank < start.rank:
            assert not m.request(target, operator=False).ok
    assert m.mode is start


@pytest.mark.parametrize("start", [M.SAFE, M.HALTED])
def test_leaving_safe_or_halted_takes_an_operator(start: M) -> None:
    m = ModeMachine(start)
    assert not m.request(M.NORMAL, operator=False).ok
    assert m.request(M.NORMAL, operator=True).ok and m.mode is M.NORMAL


def test_shutdown_goes_through_safe_and_is_final() -> None:
    m = ModeMachine(M.LIMITED)
    move = m.request(M.SHUTDOWN, operator=False)
    assert move.ok and move.steps == (M.SAFE, M.SHUTDOWN)
    assert not m.request(M.NORMAL, operator=True).ok
    assert ModeMachine(M.SAFE).request(M.SHUTDOWN, operator=False).steps == (M.SHUTDOWN,)
    assert ModeMachine(M.NORMAL).shutdown().steps == (M.SAFE, M.SHUTDOWN)
    assert not ModeMachine(M.NORMAL).request(M.SHUTDOWN, operator=True).ok


def test_mode_rules_for_orders() -> None:
    assert [m for m in M if m.allows_entries()] == [M.NORMAL]
    assert [m for m in M if m.allows_exits()] == [M.NORMAL, M.LIMITED, M.SAFE]
