"""The trading-mode state machine (ARCHITECTURE.md "Trading modes").

Automatic moves only go up; going down, or leaving `safe`/`halted`, takes an operator;
nothing leaves `shutdown`.
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
        self.mode = target
        return Move(True, old, target)
