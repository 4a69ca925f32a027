"""Optimize throughput: trials per minute with 1, 2 and 4 local workers (SQLite study) and
with 2 processes sharing one PostgreSQL study, beside the raw baseline of the same backtests
run in a plain loop (no Optuna, no storage) in the same run; the median pruner on vs off
(same study size and seed, one worker); NSGA-II's Pareto front size for sharpe,return; then
a walk-forward table. Data: backtesting.py's GOOG daily bars (2,148), sma_cross, --exits
signal --veto off.

    python scripts/bench.py optimize
    python scripts/bench_optimize.py --trials 16 --workers 1 2 4 --walk-forward 3
    python scripts/bench_optimize.py --trials 60 --only pruner nsga
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG = os.environ.get("AEGIS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REPEAT = 3  # runs of each pruner mode
SPACE = "fast = { low = 5, high = 30 }\nslow = { low = 31, high = 120 }\n"


def goog(tmp: Path) -> Path:
    from backtesting.test import GOOG

    df = GOOG.rename(columns=str.lower)
    df.index.name = "ts"
    path = tmp / "goog.csv"
    df.to_csv(path, date_format="%Y-%m-%dT%H:%M:%S")
    (tmp / "space.toml").write_text(SPACE, encoding="utf-8")
    return path


def cmd(data: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "aegis_actors", "optimize", "--data", str(data), "--symbol",
        "GOOG", "--strategy", "sma_cross", "--space", str(data.parent / "space.toml"),
        "--exits", "signal", "--veto", "off", "--param", "short=0", "--trials", str(trials),
        "--seed", "1", "--out", str(out), *extra,
    ]  # fmt: skip


def baseline(data: Path, n: int) -> float:
    """The same backtests in a plain loop: trials per minute with no Optuna, no storage."""
    from aegis_actors.backtest.api import BacktestConfig, run_backtest

    rnd = random.Random(1)
    t0 = time.perf_counter()
    for _ in range(n):
        params = {"fast": rnd.randint(5, 30), "slow": rnd.randint(31, 120), "short": 0}
        with tempfile.TemporaryDirectory() as out:
            run_backtest(
                BacktestConfig(
                    data=data, symbol="GOOG", strategy="sma_cross", params=params,
                    exits="signal", veto=False, out=out, html=False,
                )
            )  # fmt: skip
    return n / (time.perf_counter() - t0) * 60


def timed(commands: list[list[str]]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, text=True) for c in commands]
    for p in procs:
        p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"optimize exited {p.returncode}")
    return time.perf_counter() - t0


def postgres_pair(data: Path, tmp: Path, trials: int) -> float:
    import psycopg2
    import psycopg2.extensions

    name = f"aegis_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        dsn = psycopg2.extensions.make_dsn(PG, dbname=name)
        c = cmd(data, tmp / "pg", trials, "--storage", dsn)
        return timed([c, c])
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def rate(n: int, seconds: float, out: Path) -> str:
    """Trials per minute, wall clock with process start-up; and the backtests actually run
    (a param set TPE proposes again reuses its earlier result)."""
    runs = len(list((out / "runs").iterdir()))
    return f"{n / seconds * 60:7.1f} trials/min ({runs} backtests, {runs / seconds * 60:.1f}/min)"


def study_of(out: Path) -> object:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="aegis", storage=f"sqlite:///{out / 'study.db'}")


def pruner_on_off(data: Path, tmp: Path, n: int) -> None:
    """The same study (size, seed, one worker) with --pruner none (the raw baseline) and
    median: trials per minute, how many the pruner stopped, and the best Sharpe each found."""
    from optuna.trial import TrialState

    rates: dict[str, list[float]] = {"none": [], "median": []}
    for i in range(2 * REPEAT):  # interleaved: the machine's load drifts
        mode = ("none", "median")[i % 2]
        out = tmp / f"pruner-{mode}-{i}"
        s = timed([cmd(data, out, n, "--pruner", mode)])
        study = study_of(out)
        trials = study.trials  # type: ignore[attr-defined]
        by_pruner = sum(1 for t in trials if "pruned_at" in t.user_attrs)
        bars = sum(
            t.user_attrs["pruned_at"] / 10 if "pruned_at" in t.user_attrs else 1.0
            for t in trials
            if "reused" not in t.user_attrs and t.state != TrialState.FAIL
        )
        best = study.best_value  # type: ignore[attr-defined]
        rates[mode].append(n / s * 60)
        print(
            f"  pruner {mode:6}: {n / s * 60:7.1f} trials/min, {by_pruner:3d} pruned by "
            f"median, {bars:5.1f} full-run equivalents replayed, best sharpe {best:.4f}"
        )
    on, off = (statistics.median(rates[m]) for m in ("median", "none"))
    print(f"  pruner median vs none: x{on / off:.2f} trials/min (median of {REPEAT} runs each)")


def nsga_front(data: Path, tmp: Path, n: int) -> None:
    """The Pareto front of two objective pairs: one that moves together on this data
    (sharpe, return) and one that pulls apart (return, profit_factor)."""
    for pair in ("sharpe,return", "return,profit_factor"):
        out = tmp / f"nsga-{pair.replace(',', '-')}"
        s = timed([cmd(data, out, n, "--objective", pair)])
        front = study_of(out).best_trials  # type: ignore[attr-defined]
        a, b = pair.split(",")
        print(f"  NSGA-II {pair}: {n} trials, {n / s * 60:.1f}/min, Pareto front {len(front)}:")
        for t in sorted(front, key=lambda t: t.values[0]):
            print(f"    trial {t.number:3d}: {a} {t.values[0]:9.4f}  {b} {t.values[1]:9.4f}"
                  f"  {t.params}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    p.add_argument("--walk-forward", type=int, default=3)
    p.add_argument(
        "--only", nargs="*", choices=("workers", "pruner", "nsga", "walk-forward"), default=None
    )
    args = p.parse_args()
    parts = set(args.only or ("workers", "pruner", "nsga", "walk-forward"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = goog(tmp)
        n = args.trials
        print(f"optimize: GOOG {n} trials per study, sma_cross fast/slow, {os.cpu_count()} cores")
        print(f"  raw baseline (plain loop of run_backtest): {baseline(data, n // 2):7.1f} /min")
        if "pruner" in parts:
            pruner_on_off(data, tmp, n)
        if "nsga" in parts:
            nsga_front(data, tmp, n)
        if "workers" not in parts:
            args.workers = []
        if "walk-forward" not in parts:
            args.walk_forward = 0
        for k in args.workers:
            s = timed([cmd(data, tmp / f"w{k}", n, "--workers", str(k))])
            print(f"  {k} local worker(s), SQLite study:           {rate(n, s, tmp / f'w{k}')}")
        if "workers" in parts:
            s = postgres_pair(data, tmp, n)
            print(f"  2 processes sharing one PostgreSQL study:  {rate(n, s, tmp / 'pg')}")
        if args.walk_forward:
            out = tmp / "wf"
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            c = cmd(data, out, n, "--walk-forward", str(args.walk_forward), "--workers", "2")
            r = subprocess.run(c, env=env, capture_output=True, text=True)
            print(f"  walk-forward ({args.walk_forward} windows, {n} trials each, sharpe):")
            for line in r.stdout.splitlines():
                if line.strip().startswith(("window", "stitched")):
                    print("  " + line)
            if r.returncode != 0:
                print("  walk-forward failed: " + (r.stderr.strip().splitlines() or ["?"])[-1])


if __name__ == "__main__":
    main()
