"""The backtest as a library call: `run_backtest(BacktestConfig(...)) -> BacktestResult`.

This is the stable programmatic API (the `backtest` command and `optimize` use it): a
strategy by name (or `path/file.py:Class`) with its params in, typed figures and the
equity series out. Same data and config give the same result, byte for byte on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aegis_actors.backtest.report import Trade
from aegis_actors.strategies.base import ParamValue

Exits = Literal["posture", "signal"]
Roles = Literal["rules", "llm"]
Runtime = Literal["inline", "threaded"]
Checkpoint = Callable[[int, list[tuple[float, float]]], bool]
"""The intermediate-value hook: `(step, equity so far) -> stop?`, called at `checkpoints`
evenly spaced bar times (step 1..N; the last one before the end of the data). Returning
True ends the replay there: the result then covers the bars replayed (optimize's median
pruner stops a poor trial this way)."""


@dataclass(frozen=True)
class BacktestConfig:
    """What to replay and how. Paths may be str or Path; `out=None` writes to a temp dir."""

    data: tuple[str | Path, ...] | list[str | Path] | str | Path
    strategy: str = "aegis"  # aegis | sma_cross | momentum | rsi | path/file.py:Class
    params: dict[str, ParamValue] = field(default_factory=dict)
    exits: Exits = "posture"
    veto: bool = True
    roles: Roles | None = None  # None: as the settings say (rules by default)
    symbol: str | None = None  # for rows without a symbol column (default: file stem)
    start: str | None = None  # --from: ISO date/time or epoch seconds, inclusive
    end: str | None = None  # --to: exclusive
    vix: str | Path | None = None
    strict: bool = False  # refuse unsorted input instead of sorting it
    settings: str | None = None
    out: str | Path | None = None
    capital: float | None = None
    runtime: Runtime = "inline"  # threaded: the live pykka runtime (parity checks)
    progress: bool = False  # a progress bar on stderr (the CLI sets it on a terminal)
    html: bool = True  # write report.html
    llm_cache: str | Path | None = None  # LLM answers: file, redis:// or postgresql:// URL;
    # default OUT/llm-cache.db
    on_checkpoint: Checkpoint | None = None
    checkpoints: int = 0  # how many times along the bars to call on_checkpoint

    def data_files(self) -> list[Path]:
        items = [self.data] if isinstance(self.data, str | Path) else list(self.data)
        return [Path(p) for p in items]


@dataclass(frozen=True)
class BacktestResult:
    """The figures of one run. `metrics` keys: return_pct, cagr_pct, sharpe, sortino,
    calmar, max_drawdown_pct, max_drawdown_bars, max_drawdown_days, profit_factor, trades,
    win_rate_pct, avg_trade, exposure_pct, final_equity (None where undefined)."""

    metrics: dict[str, float | int | None]
    equity: list[tuple[float, float]]  # (bar time, equity after that bar)
    trades: list[Trade]  # fills in time order
    report: dict[str, Any]  # everything in report.json
    out: Path
    bars_per_s: float  # replay speed, start-up excluded


def run_backtest(config: BacktestConfig) -> BacktestResult:
    """Run one backtest. Raises BacktestError (bad data, strategy or settings: one line)."""
    from aegis_actors.backtest.runner import execute

    return execute(config)
