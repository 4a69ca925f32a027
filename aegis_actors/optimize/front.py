"""Which trial is "best": the best value for one objective; for several, a Pareto front
and a documented pick from it (best.toml, the reproduce check, walk-forward's params).

`--pick balanced` (default): each objective is scaled to 0..1 over the front (its worst
front value 0, its best 1; all equal: 1); the trial whose lowest scaled objective is the
highest wins, i.e. the one that gives up least on any objective. `--pick NAME`: the front's
best on that objective. Ties go to the lowest trial number (the same pick on every run).
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials no other complete trial beats on every objective."""
    if len(study.directions) == 1:
        done = scored(study.trials)
        return [study.best_trial] if done else []
    return sorted(study.best_trials, key=lambda t: t.number)


def scored(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]


def pick(
    study: optuna.Study, objectives: tuple[str, ...], rule: str = "balanced"
) -> tuple[FrozenTrial, str] | None:
    """(the chosen trial, how it was chosen) or None when no trial scored."""
    if len(objectives) == 1:
        done = scored(study.trials)
        return (study.best_trial, "") if done else None
    trials = front(study)
    if not trials:
        return None
    how = f"chosen from a Pareto front of {len(trials)} by --pick {rule}"
    if rule in objectives:
        i = objectives.index(rule)
        return max(trials, key=lambda t: (t.values[i], -t.number)), how
    lows = [min(t.values[i] for t in trials) for i in range(len(objectives))]
    highs = [max(t.values[i] for t in trials) for i in range(len(objectives))]

    def worst(t: FrozenTrial) -> float:
        return min(
            (v - lo) / (hi - lo) if hi > lo else 1.0
            for v, lo, hi in zip(t.values, lows, highs, strict=True)
        )

    return max(trials, key=lambda t: (worst(t), -t.number)), how


def label(objectives: tuple[str, ...], values: list[float] | None) -> str:
    """ "sharpe = 1.2, return = 30.5" (repr: the exact values best.toml reproduces)."""
    if values is None:
        return "no value"
    return ", ".join(f"{n} = {v!r}" for n, v in zip(objectives, values, strict=True))
