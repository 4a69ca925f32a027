"""The `optimize` subcommand: options, the run, best.toml and the report."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from aegis_actors.backtest.api import BacktestConfig
from aegis_actors.optimize import walkforward
from aegis_actors.optimize.best import write_best
from aegis_actors.optimize.objective import Job, backtest, score
from aegis_actors.optimize.progress import Bar
from aegis_actors.optimize.report import _day as day
from aegis_actors.optimize.report import _num as num
from aegis_actors.optimize.report import write_report
from aegis_actors.optimize.space import SpaceError, load_space
from aegis_actors.optimize.study import Where, counts, resolve
from aegis_actors.optimize.worker import run_study
from aegis_actors.strategies import parse_params


def job_from_args(args: argparse.Namespace) -> Job:
    """Raises SpaceError / StrategyError (one line)."""
    space = tuple(load_space(args.space))
    fixed = parse_params(args.param)
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
        objective=args.objective,
        min_trades=args.min_trades,
        trials=args.trials,
        study=args.study,
        out=str(Path(args.out).resolve()),
        seed=args.seed,
        fixed=fixed,
        llm_cache=str(Path(args.llm_cache or Path(args.out, "llm-cache.db")).resolve()),
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
        "objective": job.objective,
        "trials": dict(c),
        "seconds": round(seconds, 1),
        "trials per minute": round(ran / max(seconds, 1e-9) * 60, 1),
    }
    runs = sum(1 for t in trials if "metrics" in t.user_attrs and "reused" not in t.user_attrs)
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
    scored = [t for t in study.trials if t.value is not None]
    if scored:
        best = study.best_trial
        scope = job
        if wf:  # the last window's in-sample bars
            last = walkforward.windows(walkforward.bar_times(job), args.walk_forward)[-1]
            scope = walkforward.in_sample(job, last)
        flags = backtest_flags(args, scope.base)
        path = write_best(out / "best.toml", best, job.fixed, job.objective, flags)
        again = backtest(scope, dict(best.params), out / "best")
        value, _ = score(job, again)
        same = "reproduced" if value == best.value else f"NOT reproduced ({value!r})"
        best_equity = again.equity
        summary["best"] = f"trial {best.number}: {job.objective} {best.value:.6g} {best.params}"
        print(
            f"best: trial {best.number}, {job.objective} = {best.value!r}, {best.params} ({same})"
        )
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
    report = write_report(out / "optimize-report.html", studies, summary, best_equity, wf)
    print(f"  report: {report}")
    return 0 if scored else 1


def stitched_return(equity: list[tuple[float, float]]) -> str:
    if len(equity) < 2:
        return "-"
    return f"{(equity[-1][1] / equity[0][1] - 1) * 100:.2f}%"
