"""The `backtest` subcommand's options and their mapping to a BacktestConfig."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aegis_actors.backtest.api import BacktestConfig
from aegis_actors.strategies import NAMES, params_file, parse_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="FILE.csv",
        help="bar CSV (ts, open, high, low, close, volume[, symbol]); repeat for more files",
    )
    p.add_argument("--symbol", metavar="S", help="symbol for rows without one (default: stem)")
    p.add_argument("--from", dest="start", metavar="D", help="first bar time (ISO or epoch)")
    p.add_argument("--to", dest="end", metavar="D", help="end time, exclusive")
    p.add_argument(
        "--strategy",
        default="aegis",
        metavar="NAME",
        help=f"{' | '.join(NAMES)} | path/file.py:Class (default aegis: the rules roles)",
    )
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="strategy parameter")
    p.add_argument(
        "--params", metavar="FILE.toml", help="strategy parameters (K = V); --param wins"
    )
    p.add_argument(
        "--exits",
        choices=("posture", "signal"),
        default="posture",
        help="posture: the posture's stop-loss/take-profit; signal: close on the opposite "
        "signal, market orders filled at the next bar's open",
    )
    p.add_argument("--veto", choices=("on", "off"), default="on", help="off: the strategy alone")
    p.add_argument(
        "--roles", choices=("rules", "llm"), default=None, help="default: as the settings say"
    )
    p.add_argument("--vix", metavar="FILE.csv", help="volatility index bars: feed the posture")
    p.add_argument(
        "--llm-cache", metavar="FILE", help="LLM answers on disk (default OUT/llm-cache.db)"
    )
    p.add_argument("--strict", action="store_true", help="refuse unsorted input")
    p.add_argument("--out", default="backtest-out", metavar="DIR", help="output directory")
    p.add_argument("--settings", metavar="FILE")


def config_from_args(args: argparse.Namespace) -> BacktestConfig:
    """Raises StrategyError for a bad --param."""
    data = args.data if isinstance(args.data, list) else [args.data]
    return BacktestConfig(
        data=[Path(d) for d in data],
        symbol=getattr(args, "symbol", None),
        start=getattr(args, "start", None),
        end=getattr(args, "end", None),
        strategy=getattr(args, "strategy", "aegis"),
        params={
            **(params_file(args.params) if getattr(args, "params", None) else {}),
            **parse_params(getattr(args, "param", [])),
        },
        exits=getattr(args, "exits", "posture"),
        veto=getattr(args, "veto", "on") != "off",
        roles=getattr(args, "roles", None),
        strict=getattr(args, "strict", False),
        vix=getattr(args, "vix", None),
        llm_cache=getattr(args, "llm_cache", None),
        settings=getattr(args, "settings", None),
        out=getattr(args, "out", "backtest-out"),
        progress=sys.stderr.isatty(),
    )
