"""best.toml: the best trial's parameters, loadable by `backtest --params best.toml`."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from aegis_actors.strategies.base import ParamValue


def toml_value(v: ParamValue) -> str:
    """Ints stay ints; floats by repr, which reads back to the same double; strings and
    booleans as TOML types them (a JSON string is a valid TOML basic string)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return str(v) if isinstance(v, int) else repr(float(v))


def write_best(
    path: Path,
    trial: optuna.trial.FrozenTrial,
    fixed: dict[str, ParamValue],
    objectives: str,
    how: str,
    note: str = "",
) -> Path:
    """`objectives`: "sharpe = 1.2" or, for a Pareto front, every objective with its value;
    `note`: why this trial (a multi-objective pick rule)."""
    params = {**fixed, **trial.params}
    lines = [
        f"# best of study: trial {trial.number}, {objectives}",
        *([f"# {note}"] if note else []),
        f"# reproduce: python -m aegis_actors backtest {how} --params {path.name}",
        *(f"{k} = {toml_value(v)}" for k, v in params.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
