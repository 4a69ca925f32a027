"""One trial: the suggested params through `run_backtest`, scored by the chosen metric(s).

A trial with fewer than `min_trades` trades, or whose metric is undefined (no trades, no
losses...), is PRUNED (user attr `reason`): it ran but says nothing. Params the strategy
refuses (e.g. fast >= slow) FAIL the trial. A trial numbered at or past the study's total
(two workers asked at the same instant) runs no backtest: PRUNED with user attr `skipped`.
Params equal to a finished trial's are not run again: its result is copied (attr `reused`).
With an LLM budget, once the study's summed spend reaches it no new trial starts (`skipped`).

The median pruner (one objective among sharpe, sortino, return, calmar; `--pruner median`,
the default) sees the objective computed on the equity path so far, as the final figure
would read had the data ended there, at 30%, 50%, 70% and 90% of the bar times (REPORTED
of the hook's CHECKPOINTS: each report and pruning check is a storage round trip, and on a
fast strategy more of them cost more than the bars they save; before 30% a path's Sharpe is
noise).
A trial below the median of earlier trials at the same checkpoint ends its replay there:
PRUNED, with user attr `reason`. profit_factor needs closed trades, not an equity path: no
pruner for it, nor for several objectives (Optuna's report/should_prune is single-objective).
Every trial of a study replays the same bars, so a checkpoint is the same bar time in each
(walk-forward: one study per window, so the pruner applies within each window).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from aegis_actors.backtest.api import BacktestConfig, BacktestResult, Checkpoint, run_backtest
from aegis_actors.optimize.cli_args import METRIC
from aegis_actors.optimize.space import Dim, suggest
from aegis_actors.strategies.base import ParamValue

Objective = Literal["sharpe", "sortino", "return", "calmar", "profit_factor"]
PRUNABLE = ("sharpe", "sortino", "return", "calmar")  # defined on an equity path alone
CHECKPOINTS = 9  # the hook is called at 10%, 20% .. 90% of the bar times
REPORTED = (3, 5, 7, 9)  # of those, the steps reported to the pruner: 30%, 50%, 70%, 90%


@dataclass(frozen=True)
class Job:
    """Everything a worker needs, picklable (local worker processes get a copy)."""

    base: BacktestConfig  # data, strategy, fixed params, window; params/out set per trial
    space: tuple[Dim, ...]
    objectives: tuple[Objective, ...] = ("sharpe",)  # several: NSGA-II, a Pareto front
    min_trades: int = 1
    trials: int = 50
    study: str = "aegis"
    out: str = "optimize-out"
    seed: int | None = None
    fixed: dict[str, ParamValue] = field(default_factory=dict)
    llm_cache: str | None = (
        None  # LLM answers shared by every trial (file, postgresql://, redis://)
    )
    budget_tokens: int | None = None  # LLM cost guard for the whole study
    budget_usd: float | None = None
    pruner: Literal["median", "none"] = "median"
    pick: str = "balanced"  # several objectives: which trial of the front is best.toml

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def prunes(self) -> bool:
        """The median pruner applies: asked for, one objective, defined on an equity path."""
        return self.pruner == "median" and not self.multi and self.objectives[0] in PRUNABLE


def backtest(
    job: Job,
    params: dict[str, ParamValue],
    out: Path | None = None,
    on_checkpoint: Checkpoint | None = None,
) -> BacktestResult:
    """The same backtest a trial runs (best.toml and walk-forward re-run it with this)."""
    from dataclasses import replace

    return run_backtest(
        replace(
            job.base,
            params={**job.fixed, **params},
            out=out,
            html=False,
            progress=False,
            llm_cache=job.llm_cache or job.base.llm_cache,
            on_checkpoint=on_checkpoint,
            checkpoints=CHECKPOINTS if on_checkpoint else 0,
        )
    )


def score(job: Job, result: BacktestResult) -> tuple[list[float] | None, str]:
    """(one value per objective, "") or (None, why it is pruned)."""
    trades = int(result.metrics.get("trades") or 0)
    if trades < job.min_trades:
        return None, f"{trades} trades < --min-trades {job.min_trades}"
    values = []
    for name in job.objectives:
        value = result.metrics.get(METRIC[name])
        if value is None:
            return None, f"{name} undefined"
        values.append(float(value))
    return values, ""


def median_watch(job: Job, trial: optuna.Trial) -> tuple[Checkpoint, list[int]]:
    """The checkpoint hook feeding the median pruner; the list gets the step it stopped at."""
    from aegis_actors.backtest.report import performance
    from aegis_actors.settings import load_settings

    capital = job.base.capital or load_settings(job.base.settings).broker.capital
    name = job.objectives[0]
    stopped: list[int] = []

    def on(step: int, equity: list[tuple[float, float]]) -> bool:
        if step not in REPORTED:
            return False
        value = performance(equity, capital, [])[METRIC[name]]
        if value is None:  # e.g. no trade yet: a flat path has no Sharpe
            return False
        trial.report(float(value), step)
        if not trial.should_prune():
            return False
        trial.set_user_attr(
            "reason",
            f"median pruner: {name} {value:.4g} at checkpoint {step}/{CHECKPOINTS} "
            f"({len(equity)} bars)",
        )
        stopped.append(step)
        return True

    return on, stopped


def run_marker(job: Job, number: int) -> Path:
    """A file per backtest run: creating it twice for one trial would raise (tests count them)."""
    runs = Path(job.out, "runs")
    runs.mkdir(parents=True, exist_ok=True)
    marker = runs / f"{job.study}-{number:05d}"
    with marker.open("x", encoding="utf-8") as f:
        f.write(f"{socket.gethostname()}:{os.getpid()}\n")
    return marker


def over_budget(job: Job, study: optuna.Study) -> str:
    """Why no new trial may start ("" when it may): the study's LLM spend, summed over
    every worker's trials, has reached --llm-budget-tokens / --llm-budget-usd."""
    if job.budget_tokens is None and job.budget_usd is None:
        return ""
    trials = study.get_trials(deepcopy=False)
    tokens = sum(int(t.user_attrs.get("llm_tokens", 0)) for t in trials)
    usd = sum(float(t.user_attrs.get("llm_cost_usd", 0.0)) for t in trials)
    if job.budget_tokens is not None and tokens >= job.budget_tokens:
        return f"LLM budget spent: {tokens} tokens >= {job.budget_tokens}"
    if job.budget_usd is not None and usd >= job.budget_usd:
        return f"LLM budget spent: ${usd:.4f} >= ${job.budget_usd}"
    return ""


def twin(trial: optuna.Trial, poll_s: float = 0.2) -> FrozenTrial | None:
    """A trial with the same params (TPE re-proposes points in small int spaces): a backtest
    is deterministic, so its result is reused instead of paid for again. One still running
    (another worker proposed the same point at the same time) is waited for; if it fails
    (its worker killed), this trial runs the params itself."""
    while True:
        earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
        same = [
            t
            for t in earlier
            if t.params == trial.params
            and not t.user_attrs.get("skipped")
            and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ]
        if same:
            return same[0]
        # running with these params, or not yet holding params (asked an instant before us)
        pending = [
            t
            for t in earlier
            if t.state == TrialState.RUNNING and (t.params == trial.params or not t.params)
        ]
        if not pending:
            return None
        with warnings.catch_warnings():  # a killed twin's worker: fail its trial here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(trial.study)
        time.sleep(poll_s)


def objective(job: Job, trial: optuna.Trial) -> float | list[float]:
    if trial.number >= job.trials:
        trial.set_user_attr("skipped", f"the study already holds {job.trials} trials")
        trial.study.stop()
        raise optuna.TrialPruned("over the study's total")
    spent = over_budget(job, trial.study)
    if spent:
        trial.set_user_attr("skipped", spent)
        trial.study.stop()
        raise optuna.TrialPruned(spent)
    params = suggest(list(job.space), trial)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    earlier = twin(trial)
    if earlier is not None:  # the same params scored before: same data, same result
        trial.set_user_attr("reused", earlier.number)
        for key in ("metrics", "reason", "pruned_at"):
            if key in earlier.user_attrs:
                trial.set_user_attr(key, earlier.user_attrs[key])
        if earlier.state == TrialState.PRUNED:  # its path is this one's: pruned again
            raise optuna.TrialPruned(str(earlier.user_attrs.get("reason", "")))
        assert earlier.values is not None
        return _out(job, list(earlier.values))
    run_marker(job, trial.number)
    hook, stopped = median_watch(job, trial) if job.prunes else (None, [])
    scratch = Path(tempfile.mkdtemp(prefix="aegis-opt-"))
    try:
        result = backtest(job, params, scratch, hook)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    llm = result.report.get("llm") or {}
    trial.set_user_attr("llm_tokens", int(llm.get("tokens", 0)))
    trial.set_user_attr("llm_cost_usd", float(llm.get("cost_usd", 0.0)))
    if stopped:  # the replay ended at that checkpoint: its figures are partial
        trial.set_user_attr("pruned_at", stopped[0])
        raise optuna.TrialPruned(str(trial.user_attrs.get("reason", "")))
    trial.set_user_attr("metrics", dict(result.metrics))
    values, why = score(job, result)
    if values is None:
        trial.set_user_attr("reason", why)
        raise optuna.TrialPruned(why)
    return _out(job, values)


def _out(job: Job, values: list[float]) -> float | list[float]:
    return values if job.multi else values[0]
