"""The strategy protocol a user's class implements (`--strategy file.py:Class`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

ParamValue = float | int | str | bool  # numbers from --param; strings/bools from TOML
Params = Mapping[str, ParamValue]


class StrategyError(ValueError):
    """A bad strategy name, file, class or parameter (one line, exit 2)."""


@runtime_checkable
class Strategy(Protocol):
    """`__init__(**params)` takes the `--param K=V` numbers (and a params file's strings or
    booleans); `signals` is causal."""

    name: str

    def signals(self, closes: Sequence[float]) -> list[int]:
        """One of +1, -1, 0 per close: the signal known at that bar's close."""
        ...
