"""The `optimize` subcommand: options, the run, best.toml and the report."""

from __future__ import annotations

import argparse
import fcntl
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

from aegis_actors.backtest.api import BacktestConfig
from aegis_actors.optimize import walkforward
from aegis_actors.optimize.best import write_best
from aegis_actors.optimize.cli_args import METRIC
from aegis_actors.optimize.front import front, label, pick
from aegis_actors.optimize.objective import PRUNABLE, Job, Objective, backtest, score
from aegis_actors.optimize.progress import Bar
from aegis_actors.optimize.report import _day as day
from aegis_actors.optimize.report import _num as num
from aegis_actors.optimize.report import write_report
from aegis_actors.optimize.space import SpaceError, load_space
from aegis_actors.optimize.study import Where, counts, resolve
from aegis_actors.optimize.worker import run_study
from aegis_actors.strategies import ParamValue, parse_params


def objectives_of(args: argparse.Namespace) -> tuple[Objective, ...]:
    """`--objective sharpe,return` or repeated; in the order given, each once."""
    names: list[str] = []
    for item in args.objective or ["sharpe"]:
        for name in (n.strip() for n in item.split(",")):
            if name not in METRIC:
                raise SpaceError(f"--objective {name}: use one of {', '.join(METRIC)}")
            if name not in names:
                names.append(name)
    if len(names) > 1 and args.pick not in ("balanced", *names):
        raise SpaceError(f"--pick {args.pick}: use balanced or one of {', '.join(names)}")
    return tuple(names)  # type: ignore[arg-type]


def llm_cache_of(args: argparse.Namespace, storage: str) -> str:
    """Where LLM answers are shared: --llm-cache/--cache (file or URL), else the study's
    PostgreSQL (every machine of the study reads it), else the settings' Redis, else a file
    in the out folder (this machine's local workers)."""
    from aegis_actors.backtest.llm_cache import is_postgres

    if args.llm_cache:
        url = "://" in args.llm_cache or is_postgres(args.llm_cache)
        return args.llm_cache if url else str(Path(args.llm_cache).resolve())
    if not storage.startswith("sqlite:"):
        return storage
    from aegis_actors.settings import SettingsError, load_settings

    try:
        redis_url = load_settings(args.settings).redis_url
    except SettingsError:
        redis_url = ""  # the backtest reports a bad settings file itself
    if redis_url:
        return redis_url
    return str(Path(args.out, "llm-cache.db").resolve())


def job_from_args(args: argparse.Namespace) -> Job:
    """Raises SpaceError / StrategyError (one line)."""
    objectives = objectives_of(args)
    space = tuple(load_space(args.space))
    fixed: dict[str, ParamValue] = dict(parse_params(args.param))
    clash = sorted(set(fixed) & {d.name for d in space})
    if clash:
        raise SpaceError(f"--param {', '.join(clash)}: also in the space")
    if args.trials < 1 or args.workers < 1:
        raise SpaceError("--trials and --workers must be at least 1")
    base = BacktestConfig(
        data=[Path(d) for d in args.data],
        symbol=args.symbol,
        start=args.start,
        end=args.end,
        strategy=args.strategy,
        exits=args.exits,
        veto=args.veto != "off",
        roles=args.roles,
        settings=args.settings,
        html=False,
    )
    return Job(
        base=base,
        space=space,
        objectives=objectives,
        pruner=args.pruner,
        pick=args.pick,
        min_trades=args.min_trades,
        trials=args.trials,
        study=args.study,
        out=str(Path(args.out).resolve()),
        seed=args.seed,
        fixed=fixed,
        llm_cache=llm_cache_of(args, resolve(args.storage, Path(args.out))),
        budget_tokens=args.llm_budget_tokens,
        budget_usd=args.llm_budget_usd,
    )


def backtest_flags(args: argparse.Namespace, base: BacktestConfig) -> str:
    """The backtest options that reproduce a trial (written into best.toml's header)."""
    flags: list[str] = [f"--data {shlex.quote(d)}" for d in args.data]
    for opt, val in (("--symbol", args.symbol), ("--from", base.start), ("--to", base.end)):
        if val:
            flags.append(f"{opt} {shlex.quote(val)}")
    flags += [f"--strategy {shlex.quote(args.strategy)}", f"--exits {args.exits}"]
    flags.append(f"--veto {args.veto}")
    if args.roles:
        flags.append(f"--roles {args.roles}")
    return " ".join(flags)


def main(args: argparse.Namespace) -> int:
    from aegis_actors.backtest.runner import BacktestError
    from aegis_actors.strategies import StrategyError

    try:
        job = job_from_args(args)
    except (SpaceError, StrategyError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    where = Where(resolve(args.storage, out), args.heartbeat, 3 * args.heartbeat)
    bar = Bar(job.trials * max(args.walk_forward, 1)) if sys.stderr.isatty() else None
    t0 = time.monotonic()
    try:
        if args.walk_forward:
            wf: dict[str, Any] | None = walkforward.run(
                job, where, args.walk_forward, args.workers, bar.update if bar else None
            )
            names = [f"{job.study}-wf{i}" for i in range(args.walk_forward)]
        else:
            wf = None
            run_study(job, where, args.workers, bar.update if bar else None)
            names = [job.study]
    except BacktestError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # the storage: unreachable, refused (never the DSN's password)
        if not _storage_error(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"--storage {where.label()}: {first}", file=sys.stderr)
        return 2
    finally:
        if bar:
            bar.close()
    seconds = time.monotonic() - t0
    studies = [optuna.load_study(study_name=n, storage=_plain(where)) for n in names]
    return finish(args, job, where, studies, wf, seconds)


def _storage_error(exc: Exception) -> bool:
    import psycopg2
    import sqlalchemy.exc

    return isinstance(exc, sqlalchemy.exc.SQLAlchemyError | psycopg2.Error)


def _plain(where: Where) -> optuna.storages.RDBStorage:
    from aegis_actors.optimize.study import storage

    return storage(where, heartbeat=False)


def finish(
    args: argparse.Namespace,
    job: Job,
    where: Where,
    studies: list[optuna.Study],
    wf: dict[str, Any] | None,
    seconds: float,
) -> int:
    out = Path(job.out)
    study = studies[-1]  # walk-forward: the last window's params are the ones to trade next
    trials = [t for s in studies for t in s.trials]
    c = counts(trials)
    ran = sum(c.values())
    summary: dict[str, Any] = {
        "study": ", ".join(s.study_name for s in studies),
        "storage": where.label(),
        "strategy": job.base.strategy,
        "objective": ", ".join(job.objectives),
        "sampler": "NSGA-II" if job.multi else "TPE",
        "pruner": pruner_label(job),
        "trials": dict(c),
        "seconds": round(seconds, 1),
        "trials per minute": round(ran / max(seconds, 1e-9) * 60, 1),
    }
    runs = sum(1 for t in trials if _ran(t))
    summary["backtests run"] = f"{runs} (a repeated param set reuses its earlier result)"
    tokens = sum(int(t.user_attrs.get("llm_tokens", 0)) for t in trials)
    if tokens:
        usd = sum(float(t.user_attrs.get("llm_cost_usd", 0.0)) for t in trials)
        summary["LLM spend"] = f"{tokens} tokens, ${usd:.4f}"
        print(f"LLM spend: {tokens} tokens, ${usd:.4f}")
    print(
        f"{ran} trials ({', '.join(f'{v} {k}' for k, v in sorted(c.items()))}) in "
        f"{seconds:.1f}s, {summary['trials per minute']} per minute, {runs} backtests run; "
        f"storage {where.label()}"
    )
    best_equity: list[tuple[float, float]] = []
    chosen = pick(study, job.objectives, job.pick)
    if job.multi:
        summary["Pareto front"] = f"{len(front(study))} trials"
        print(f"Pareto front: {len(front(study))} trials ({', '.join(job.objectives)})")
    if chosen is not None:
        best, how = chosen
        scope = job
        if wf:  # the last window's in-sample bars
            last = walkforward.windows(walkforward.bar_times(job), args.walk_forward)[-1]
            scope = walkforward.in_sample(job, last)
        flags = backtest_flags(args, scope.base)
        values = label(job.objectives, best.values)
        with exclusive(out / ".best.lock"):  # workers sharing --out rerun it in turn
            path = write_best(out / "best.toml", best, job.fixed, values, flags, how)
            again = backtest(scope, dict(best.params), out / "best")
        got, _ = score(job, again)
        same = "reproduced" if got == best.values else f"NOT reproduced ({got!r})"
        best_equity = again.equity
        summary["best"] = f"trial {best.number}: {values} {best.params}" + (
            f" ({how})" if how else ""
        )
        print(f"best: trial {best.number}, {values}, {best.params} ({same})")
        if how:
            print(f"  {how}")
        print(f"  written to {path}")
    else:
        print("no trial scored: no best.toml", file=sys.stderr)
    if wf is not None:
        for r in wf["rows"]:
            print(
                f"  window {r['window']}: IS {day(r['is_from'])}..{day(r['is_to'])} "
                f"{num(r.get('is')):>8}  OOS {day(r['oos_from'])}..{day(r['oos_to'])} "
                f"{num(r.get('oos')):>8} ({num(r.get('oos_trades'))} trades)  {r.get('params')}"
            )
        print(f"  stitched out-of-sample return: {stitched_return(wf['equity'])}")
    report = write_report(
        out / "optimize-report.html",
        studies,
        summary,
        best_equity,
        wf,
        job.objectives,
        chosen[0].number if chosen else None,
    )
    print(f"  report: {report}")
    return 0 if chosen else 1


def _ran(t: optuna.trial.FrozenTrial) -> bool:
    """A backtest ran for this trial (to its end, or stopped by the pruner)."""
    attrs = t.user_attrs
    return ("metrics" in attrs or "pruned_at" in attrs) and "reused" not in attrs


def pruner_label(job: Job) -> str:
    if job.prunes:
        return "median (objective on the equity path at 10%..90% of the bars)"
    if job.pruner == "none":
        return "none (--pruner none)"
    if job.multi:
        return "none (several objectives)"
    name = job.objectives[0]
    return f"none ({name} needs closed trades; median prunes {', '.join(PRUNABLE)})"


def stitched_return(equity: list[tuple[float, float]]) -> str:
    if len(equity) < 2:
        return "-"
    return f"{(equity[-1][1] / equity[0][1] - 1) * 100:.2f}%"


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """One process at a time: workers of one study sharing an output folder each rerun the
    best trial into `best/`, which a run empties first (its ledger, its logs)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
