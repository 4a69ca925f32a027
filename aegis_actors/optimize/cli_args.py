"""The `optimize` subcommand's options: light imports (optuna loads only when it runs)."""

from __future__ import annotations

import argparse

from aegis_actors.strategies import NAMES

METRIC: dict[str, str] = {  # --objective: the BacktestResult.metrics key it maximises
    "sharpe": "sharpe",
    "sortino": "sortino",
    "return": "return_pct",
    "calmar": "calmar",
    "profit_factor": "profit_factor",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, action="append", metavar="FILE.csv")
    p.add_argument("--symbol", metavar="S", help="symbol for rows without one (default: stem)")
    p.add_argument("--from", dest="start", metavar="D", help="first bar time (ISO or epoch)")
    p.add_argument("--to", dest="end", metavar="D", help="end time, exclusive")
    p.add_argument("--strategy", required=True, metavar="NAME", help=" | ".join(NAMES[1:]))
    p.add_argument("--space", required=True, metavar="FILE.toml", help="search space")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="fixed param")
    p.add_argument("--trials", type=int, default=50, metavar="N", help="the study's total")
    p.add_argument("--study", default="aegis", metavar="NAME", help="study name (join by name)")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="postgresql://... to share the study across machines (default: "
        "AEGIS_POSTGRES_DSN, else OUT/study.db)",
    )
    p.add_argument("--workers", type=int, default=1, metavar="K", help="local worker processes")
    p.add_argument(
        "--objective",
        action="append",
        metavar="NAME[,NAME]",
        help=f"{' | '.join(METRIC)} (default sharpe); several (comma or repeated): NSGA-II",
    )
    p.add_argument(
        "--pruner",
        choices=("median", "none"),
        default="median",
        help="median pruner on the equity path (one of sharpe/sortino/return/calmar)",
    )
    p.add_argument(
        "--pick",
        default="balanced",
        metavar="RULE",
        help="several objectives: balanced | an objective's name (best.toml's trial)",
    )
    p.add_argument("--min-trades", type=int, default=1, metavar="M", help="fewer: pruned")
    p.add_argument("--walk-forward", type=int, default=0, metavar="K", help="K rolling windows")
    p.add_argument("--exits", choices=("posture", "signal"), default="posture")
    p.add_argument("--veto", choices=("on", "off"), default="on")
    p.add_argument("--roles", choices=("rules", "llm"), default=None)
    p.add_argument(
        "--llm-cache",
        "--cache",
        dest="llm_cache",
        metavar="FILE|URL",
        help="LLM answers: a file, redis://... or postgresql://... (default: the "
        "--storage PostgreSQL, else the settings' Redis, else OUT/llm-cache.db)",
    )
    p.add_argument("--llm-budget-tokens", type=int, metavar="T", help="stop new trials at T")
    p.add_argument("--llm-budget-usd", type=float, metavar="USD", help="stop new trials at USD")
    p.add_argument("--heartbeat", type=int, default=5, metavar="S", help="worker heartbeat")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="TPE sampler seed")
    p.add_argument("--out", default="optimize-out", metavar="DIR")
    p.add_argument("--settings", metavar="FILE")
