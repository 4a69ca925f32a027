"""The trading-mode state machine (ARCHITECTURE.md "Trading modes").

Automatic moves only go up; going down, or leaving `safe`/`halted`, takes an operator;
nothing leaves `shutdown`, and shutdown comes after `safe` (`Move.steps` lists `safe`
first when the move jumps over it, so positions are closed before the tree stops).
"""

from __future__ import annotations

from dataclasses import dataclass

from aegis_actors.messages import TradingMode


@dataclass(frozen=True)
class Move:
    ok: bool
    old: TradingMode
    new: TradingMode
    why: str = ""
    steps: tuple[TradingMode, ...] = ()  # the modes entered, in order (ends with `new`)


class ModeMachine:
    def __init__(self, mode: TradingMode = TradingMode.NORMAL) -> None:
        self.mode = mode

    def request(self, target: TradingMode, *, operator: bool) -> Move:
        old = self.mode
        if target == old:
            return Move(False, old, old, f"already {old}")
        if old is TradingMode.SHUTDOWN:
            return Move(False, old, old, "shutdown is final")
        if not operator and target.rank < old.rank:
            return Move(False, old, old, f"automatic moves only go up (now {old})")
        if operator and target is TradingMode.SHUTDOWN:
            return Move(False, old, old, "use the shutdown command")
        steps: tuple[TradingMode, ...] = (target,)
        if target is TradingMode.SHUTDOWN and old.rank < TradingMode.SAFE.rank:
            steps = (TradingMode.SAFE, target)
        self.mode = target
        return Move(True, old, target, steps=steps)

    def shutdown(self) -> Move:
        """The operator's `shutdown` command (and the root giving up): safe, then shutdown."""
        old = self.mode
        if old is TradingMode.SHUTDOWN:
            return Move(False, old, old, "shutdown is final")
        steps: tuple[TradingMode, ...] = (TradingMode.SHUTDOWN,)
        if old.rank < TradingMode.SAFE.rank:
            steps = (TradingMode.SAFE, TradingMode.SHUTDOWN)
        self.mode = TradingMode.SHUTDOWN
        return Move(True, old, TradingMode.SHUTDOWN, steps=steps)
