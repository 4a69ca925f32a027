"""The search space from TOML: one key per strategy parameter.

`fast = { low = 5, high = 30 }` is an int range (both bounds ints), `threshold = { low =
0.001, high = 0.05, log = true }` a float range,
`kind = { choices = ["a", "b"] }` a category of numbers, strings or booleans (passed to the
strategy as they are, and written so into best.toml); `step` is allowed on ranges.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from aegis_actors.strategies.base import ParamValue


class SpaceError(ValueError):
    """A bad space file: one line naming the key and why (exit 2)."""


@dataclass(frozen=True)
class Dim:
    """One searched parameter."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    is_int: bool = False
    choices: tuple[ParamValue, ...] = ()

    def suggest(self, trial: optuna.Trial) -> ParamValue:
        if self.choices:
            value = trial.suggest_categorical(self.name, list(self.choices))
            assert value is not None  # choices hold no None (parse_dim)
            return value
        assert self.low is not None and self.high is not None
        if self.is_int:
            step = int(self.step or 1)
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def parse_dim(name: str, spec: Any) -> Dim:
    where = f"space {name}"
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: expected a table like {{ low = 5, high = 30 }}")
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise SpaceError(f"{where}: unknown key {', '.join(sorted(unknown))}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: choices must be a non-empty list")
        if not all(isinstance(c, int | float | str) for c in choices):
            raise SpaceError(f"{where}: choices must be numbers, strings or booleans")
        if len({(type(c), c) for c in choices}) < len(choices):
            raise SpaceError(f"{where}: a choice is listed twice")
        if len(set(spec) - {"choices"}):
            raise SpaceError(f"{where}: choices cannot be mixed with low/high/log/step")
        return Dim(name, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not (_num(low) and _num(high)):
        raise SpaceError(f"{where}: low and high must both be numbers")
    assert low is not None and high is not None
    if low > high:
        raise SpaceError(f"{where}: low ({low}) is above high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log must be true or false")
    if log and low <= 0:
        raise SpaceError(f"{where}: a log range needs low > 0")
    step = spec.get("step")
    if step is not None and (not _num(step) or step <= 0):
        raise SpaceError(f"{where}: step must be a positive number")
    if step is not None and log:
        raise SpaceError(f"{where}: step and log cannot be combined")
    is_int = (
        isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
    )
    return Dim(name, float(low), float(high), log, None if step is None else float(step), is_int)


def parse_space(data: dict[str, Any]) -> list[Dim]:
    table = data.get("space", data)
    if not isinstance(table, dict) or not table:
        raise SpaceError("space: no parameters (one key per strategy parameter)")
    return [parse_dim(k, v) for k, v in table.items()]


def load_space(path: str | Path) -> list[Dim]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpaceError(f"--space {path}: {exc}") from None
    return parse_space(data)


def suggest(space: list[Dim], trial: optuna.Trial) -> dict[str, ParamValue]:
    return {d.name: d.suggest(trial) for d in space}
