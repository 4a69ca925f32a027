"""best.toml: the best trial's parameters, loadable by `backtest --params best.toml`."""

from __future__ import annotations

from pathlib import Path

import optuna


def toml_value(v: float | int) -> str:
    """Ints stay ints; floats by repr, which reads back to the same double."""
    if isinstance(v, bool):
        return str(int(v))
    return str(v) if isinstance(v, int) else repr(float(v))


def write_best(
    path: Path, trial: optuna.trial.FrozenTrial, fixed: dict[str, float], objective: str, how: str
) -> Path:
    params = {**fixed, **trial.params}
    lines = [
        f"# best of study: trial {trial.number}, {objective} = {trial.value!r}",
        f"# reproduce: python -m aegis_actors backtest {how} --params {path.name}",
        *(f"{k} = {toml_value(v)}" for k, v in params.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
