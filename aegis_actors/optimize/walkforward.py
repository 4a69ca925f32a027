"""Walk-forward: K rolling windows, optimise on each in-sample part, score the best params
on the following out-of-sample part; the out-of-sample parts abut, so their equity stitches.

Each window's in-sample is three out-of-sample lengths long: with n bar times, the
out-of-sample length is n // (K + 3). Boundaries are bar times passed as --from (inclusive)
and --to (exclusive), so no bar is in both parts of a window. Indicators start cold in
each out-of-sample part (no warm-up bars are borrowed from in-sample).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aegis_actors.backtest.bars import load_many, parse_ts
from aegis_actors.backtest.runner import BacktestError
from aegis_actors.optimize.front import pick
from aegis_actors.optimize.objective import Job, backtest, score
from aegis_actors.optimize.study import Where
from aegis_actors.optimize.worker import Watch, run_study

IS_RATIO = 3


@dataclass(frozen=True)
class Window:
    index: int
    is_from: float
    is_to: float  # exclusive: the first out-of-sample bar time
    oos_from: float
    oos_to: float | None  # exclusive; None: to the end of the data


def bar_times(job: Job) -> list[float]:
    bf = load_many(job.base.data_files(), job.base.symbol, strict=job.base.strict)
    lo = parse_ts(job.base.start) if job.base.start else None
    hi = parse_ts(job.base.end) if job.base.end else None
    return sorted(
        {b.ts for b in bf.bars if (lo is None or b.ts >= lo) and (hi is None or b.ts < hi)}
    )


def windows(times: list[float], k: int) -> list[Window]:
    """K rolling windows over sorted unique bar times."""
    oos = len(times) // (k + IS_RATIO)
    if k < 1 or oos < 2:
        raise BacktestError(f"--walk-forward {k}: {len(times)} bars are too few for {k} windows")
    span = IS_RATIO * oos
    out = []
    for i in range(k):
        a, b, c = i * oos, i * oos + span, i * oos + span + oos
        last = i == k - 1
        out.append(
            Window(i, times[a], times[b], times[b], None if last or c >= len(times) else times[c])
        )
    return out


def _ts(t: float | None) -> str | None:
    return None if t is None else repr(t)


def in_sample(job: Job, w: Window) -> Job:
    base = replace(job.base, start=_ts(w.is_from), end=_ts(w.is_to))
    return replace(job, base=base, study=f"{job.study}-wf{w.index}")


def out_of_sample(job: Job, w: Window) -> Job:
    return replace(job, base=replace(job.base, start=_ts(w.oos_from), end=_ts(w.oos_to)))


def run(job: Job, where: Where, k: int, workers: int, watch: Watch | None) -> dict[str, Any]:
    """Every window in turn; returns the table rows and the stitched out-of-sample equity."""
    rows: list[dict[str, Any]] = []
    stitched: list[tuple[float, float]] = []
    level = None
    for w in windows(bar_times(job), k):
        study = run_study(in_sample(job, w), where, workers, watch)
        chosen = pick(study, job.objectives, job.pick)
        row: dict[str, Any] = {"window": w.index, **_span(w)}
        if chosen is None:
            rows.append({**row, "params": None, "is": None, "oos": None, "why": "no trial scored"})
            continue
        best = chosen[0]
        oos_dir = Path(job.out, "walk-forward", f"window-{w.index}")
        result = backtest(out_of_sample(job, w), dict(best.params), oos_dir)
        values, why = score(job, result)
        one = not job.multi  # one objective: plain numbers in the table
        rows.append(
            {
                **row,
                "params": dict(best.params),
                "is": best.values[0] if one and best.values else best.values,
                "oos": values[0] if one and values else values,
                "why": why,
                "oos_return_pct": result.metrics.get("return_pct"),
                "oos_trades": result.metrics.get("trades"),
            }
        )
        start = result.equity[0][1] if result.equity else 1.0
        level = level if level is not None else start
        for ts, eq in result.equity:
            stitched.append((ts, level * eq / start))
        if stitched:
            level = stitched[-1][1]
    return {"rows": rows, "equity": stitched}


def _span(w: Window) -> dict[str, Any]:
    return {"is_from": w.is_from, "is_to": w.is_to, "oos_from": w.oos_from, "oos_to": w.oos_to}
