"""Workers: each joins the study and runs trials until it holds `--trials` finished ones.

One worker runs in this process; `--workers K > 1` starts K spawned processes and this
process only watches. Every worker stops on Optuna's MaxTrialsCallback counting finished
*and running* trials (so N in total, not N each), then waits until no trial is running:
a trial left RUNNING by a killed worker turns FAILED once its heartbeat is stale.
"""

from __future__ import annotations

import multiprocessing
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from aegis_actors.backtest.runner import BacktestError
from aegis_actors.optimize.objective import Job, objective
from aegis_actors.optimize.study import FINISHED, Where, open_study, population

COUNTED = (*FINISHED, TrialState.RUNNING)
Watch = Callable[[optuna.Study], None]


def full(study: optuna.Study, total: int) -> bool:
    return len(study.get_trials(deepcopy=False, states=COUNTED)) >= total


def drain(study: optuna.Study, where: Where, timeout_s: float = 3600.0) -> None:
    """Wait until no trial is running: others finish theirs, stale ones are failed."""
    deadline = time.monotonic() + timeout_s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while time.monotonic() < deadline:
            optuna.storages.fail_stale_trials(study)
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return
            time.sleep(min(1.0, where.heartbeat_s / 2))


def join(job: Job, where: Where, seed: int | None = None) -> optuna.Study:
    """Open the job's study with its sampler and pruner."""
    return open_study(
        where,
        job.study,
        seed=seed,
        objectives=len(job.objectives),
        prune=job.prunes,
        population=population(job.trials),
    )


def run_worker(job: Job, where: Where, index: int = 0, watch: Watch | None = None) -> None:
    """One worker: join, run trials until the study is full, drain."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = join(job, where, job.seed)  # seeded per join (study.py)
    if not full(study, job.trials):
        study.optimize(
            lambda trial: objective(job, trial),
            callbacks=[
                MaxTrialsCallback(job.trials, states=COUNTED),
                *([lambda st, _t: watch(st)] if watch else []),
            ],
            catch=(BacktestError,),
            gc_after_trial=False,
        )
    drain(study, where)


def run_study(job: Job, where: Where, workers: int = 1, watch: Watch | None = None) -> optuna.Study:
    """Run the study with `workers` local workers; `watch(study)` is called while it runs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = join(job, where)  # created here, before any worker
    if workers <= 1:
        run_worker(job, where, 0, watch)  # in this process: kill -9 of it kills its trial
        if watch is not None:
            watch(study)
        return study
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(job, where, i)) for i in range(workers)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            if watch is not None:
                watch(study)
            for p in procs:
                p.join(0.5 / workers)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    if watch is not None:
        watch(study)
    return study
