"""Where the study lives and how a worker joins it.

Default: a SQLite file in the out folder (local workers). `--storage postgresql://...` (or
AEGIS_POSTGRES_DSN, URL or `key=value` form) puts it in PostgreSQL so the same command on
several machines joins one study. Heartbeats make a worker killed mid-trial leave that trial
FAILED (seen by the next worker to start a trial), never lost, never re-run.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from loguru import logger
from optuna.trial import FrozenTrial, TrialState

log = logger.bind(actor="optimize")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class Where:
    """A study's storage as picklable data (workers in other processes rebuild it)."""

    dsn: str  # sqlite:///path or a PostgreSQL DSN (URL or key=value)
    heartbeat_s: int = 5
    grace_s: int = 15

    @property
    def is_postgres(self) -> bool:
        return not self.dsn.startswith("sqlite:")

    def label(self) -> str:
        """For logs and reports: never the password."""
        if not self.is_postgres:
            return self.dsn
        import psycopg2.extensions

        try:
            parts = psycopg2.extensions.parse_dsn(self.dsn)
        except psycopg2.ProgrammingError:
            return "postgresql (unparsable DSN)"
        return f"postgresql {parts.get('host', 'localhost')}/{parts.get('dbname', '')}"


def resolve(storage: str | None, out: Path) -> str:
    if storage:
        return storage
    return os.environ.get("AEGIS_POSTGRES_DSN") or f"sqlite:///{(out / 'study.db').resolve()}"


def _on_failed(study: optuna.Study, trial: FrozenTrial) -> None:
    log.warning(f"trial {trial.number} failed: its worker stopped beating (killed?)")


def storage(where: Where, heartbeat: bool = True) -> optuna.storages.RDBStorage:
    beat: dict[str, Any] = {}
    if heartbeat:
        beat = {
            "heartbeat_interval": where.heartbeat_s,
            "grace_period": where.grace_s,
            "heartbeat_stale_trial_callback": _on_failed,
        }
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    if where.is_postgres:
        import psycopg2

        dsn = where.dsn

        def connect() -> Any:
            return psycopg2.connect(dsn)

        kwargs: dict[str, Any] = {"creator": connect, "pool_pre_ping": True}
        return optuna.storages.RDBStorage("postgresql+psycopg2://", engine_kwargs=kwargs, **beat)
    kwargs = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(where.dsn, engine_kwargs=kwargs, **beat)


def open_study(
    where: Where,
    name: str,
    seed: int | None = None,
    heartbeat: bool = True,
    objectives: int = 1,
    prune: bool = False,
    population: int = 50,
) -> optuna.Study:
    """Create the study or join it (load_if_exists): every worker calls this. In PostgreSQL
    the first join creates Optuna's tables, so joins are serialised by an advisory lock
    (two machines starting at once would otherwise race on CREATE TABLE).

    One objective: TPE, and the median pruner when `prune` (AtCheckpoint). Several:
    NSGA-II (generations of `population` trials) and no pruner."""
    with _join_lock(where):
        study = optuna.create_study(
            storage=storage(where, heartbeat),
            study_name=name,
            directions=["maximize"] * objectives,
            load_if_exists=True,
        )
        joins = int(study.user_attrs.get("joins", 0))
        study.set_user_attr("joins", joins + 1)
    # Each join samples from its own seed: the same command with the same --seed on two
    # machines must not propose the same first (random) trials.
    own = None if seed is None else seed + joins
    if objectives > 1:
        study.sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=own)
    else:
        study.sampler = optuna.samplers.TPESampler(seed=own)
    study.pruner = AtCheckpoint() if prune and objectives == 1 else optuna.pruners.NopPruner()
    return study


class AtCheckpoint(optuna.pruners.BasePruner):
    """Optuna's MedianPruner judging a trial by its value at this checkpoint.

    MedianPruner compares a trial's *best* value over its steps with the median at the
    current step: right for learning curves, which improve, but an equity path's Sharpe is
    noisy early and drifts, so a strong first tenth would shield a trial for the rest of its
    run (GOOG: nothing was ever pruned). Handing it only the current step's value compares
    like with like: this trial's figure at this bar time against the median of the complete
    trials' figures at the same bar time. 5 complete trials first, from the third checkpoint
    (30% of the bars), against at least 3."""

    def __init__(self) -> None:
        self.median = optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=3, n_min_trials=3
        )

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        now = copy.copy(trial)
        now.intermediate_values = {step: trial.intermediate_values[step]}
        return self.median.prune(study, now)


def population(trials: int) -> int:
    """NSGA-II generation size: a quarter of the study (4..50), so a small study still
    breeds a few generations instead of sampling at random throughout (Optuna's 50)."""
    return max(4, min(50, trials // 4))


JOIN_LOCK = 0x4AE615  # the advisory lock key for joining a study


@contextlib.contextmanager
def _join_lock(where: Where) -> Iterator[None]:
    if not where.is_postgres:
        yield
        return
    import psycopg2

    con = psycopg2.connect(where.dsn)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (JOIN_LOCK,))
        yield
    finally:
        con.close()  # the session lock goes with the connection


def counts(trials: list[FrozenTrial]) -> Counter[str]:
    """done/running/failed/pruned, skipped trials (over the total) left out."""
    c: Counter[str] = Counter()
    for t in trials:
        if t.user_attrs.get("skipped"):
            continue
        c[t.state.name.lower()] += 1
    return c
