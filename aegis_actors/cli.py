"""The command line: `python -m aegis_actors [run|check|close-day|backtest|optimize|tail|...]`.

Exit status: 0 success, 1 a check or run failed, 2 bad usage or bad settings (one line
naming the key and why).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from aegis_actors.admin import client as admin_cli
from aegis_actors.backtest import cli_args as backtest_args
from aegis_actors.optimize import cli_args as optimize_args
from aegis_actors.settings import Settings, SettingsError, check_writable, load_settings

LEVELS = ["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


def seconds(text: str) -> float:
    """`--for`: a finite number of seconds above zero (-1 would stop at once, nan never)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds > 0")
    return value


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line (exit 2), not the usage block plus the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m aegis_actors",
        description="AEGIS: an AI trading desk as a tree of supervised actors.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run the tree in the foreground (the default)",
        description="Run AEGIS in the foreground; Ctrl-C or SIGTERM stops "
        "the tree in reverse order and exits 0.",
    )
    for target in (p, run):
        target.add_argument(
            "--settings",
            metavar="FILE",
            help="settings file (default: ./settings.toml when present)",
        )
        target.add_argument(
            "--for",
            dest="for_s",
            type=seconds,
            metavar="SECONDS",
            help="stop by itself after SECONDS",
        )
    for target in (p, run):
        target.add_argument(
            "--resume",
            action="store_true",
            help="start normal even when the previous run ended in an automatic shutdown",
        )
    check = sub.add_parser(
        "check",
        help="pre-session checklist; exit 0 when all pass",
        description="Pre-session checklist (SPEC 7), each item a real probe, one line "
        "PASS/WARN/FAIL: disk, durable store and schema, Redis and the admin secret, broker "
        "keys and account, clock skew, market-data keys, each LLM endpoint and its backup, "
        "daily limits. Exit 0 when nothing FAILs.",
    )
    check.add_argument("--settings", metavar="FILE")
    check.add_argument("--json", action="store_true", help="one JSON document for machines")
    close = sub.add_parser(
        "close-day",
        help="post-session: cancel unfilled orders, report, archive logs, readiness",
        description="SPEC 7's closing checklist, one line per step; exit 0 when every step "
        "passed. With a running process (Redis + AEGIS_ADMIN_SECRET) it asks it to cancel "
        "the unfilled orders; without one it cancels at the broker. Writes "
        "daily-YYYY-MM-DD.json and .html. Running it twice changes nothing.",
    )
    close.add_argument("--settings", metavar="FILE")
    close.add_argument("--out", default="reports", metavar="DIR", help="report directory")
    close.add_argument("--date", metavar="YYYY-MM-DD", help="the day (UTC; default today)")
    backtest = sub.add_parser(
        "backtest",
        help="replay a bar CSV through the tree; write trades, equity, report",
        description="Replay historical bars (CSV: ts, open, high, low, close, volume[, "
        "symbol]) through the same tree on a virtual clock: paper broker in bar mode "
        "(an order fills no earlier than the next bar's open), a strategy, SQLite; "
        "writes trades.csv, equity.csv, report.json and report.html.",
    )
    backtest_args.add_arguments(backtest)
    optimize = sub.add_parser(
        "optimize",
        help="search strategy params on Optuna; workers share one study",
        description="Search a strategy's params (space in TOML) with Optuna's TPE sampler: "
        "--workers local processes, or the same command on several machines with "
        "--storage postgresql://...; writes best.toml and optimize-report.html.",
    )
    optimize_args.add_arguments(optimize)
    tail = sub.add_parser(
        "tail",
        help="pretty-print or follow the JSON log",
        description="Pretty-print logs/aegis.jsonl; -f follows it.",
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep following new lines")
    tail.add_argument("--level", choices=LEVELS, default="DEBUG", help="lowest level shown")
    tail.add_argument("--event", metavar="EVENT_ID", help="only lines about this event")
    tail.add_argument("--actor", metavar="NAME", help="only lines from this actor")
    tail.add_argument(
        "--file", metavar="PATH", help="log file (default: <run.log_dir>/aegis.jsonl)"
    )
    tail.add_argument("--settings", metavar="FILE")
    admin_cli.add_parser(sub)
    top = sub.add_parser("top", help="live terminal view of a running process")
    top.add_argument("--url", help="dashboard URL (default: from dashboard.host/port)")
    top.add_argument("--every", type=float, default=2.0, metavar="SECONDS")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--settings", metavar="FILE")
    return p


def settings_or_exit(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    from aegis_actors.app import Aegis

    settings = settings_or_exit(args.settings)
    try:
        check_writable(settings)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if settings.feed.kind == "replay":  # history is paced by the backtest driver, not a clock
        args.data, args.symbol, args.out = [settings.feed.replay_file], None, "backtest-out"
        return cmd_backtest(args)
    try:
        app = Aegis(settings, resume=bool(getattr(args, "resume", False)))
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    stop_asked = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        # Only an Event the main thread never waits on: the handler runs on the main thread,
        # and setting `rt.shutdown` here could find that thread inside `shutdown.wait()`
        # holding the Event's own (non-reentrant) lock — a hang on Ctrl-C.
        stop_asked.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    app.start()
    why = app.wait(args.for_s, asked=stop_asked.is_set)
    if why == "shutdown requested":
        why = "signal or shutdown command"
    return app.stop(why)


def cmd_check(args: argparse.Namespace) -> int:
    from aegis_actors.checks import as_json, passed, render, run_checks

    items = run_checks(settings_or_exit(args.settings))
    print(as_json(items) if args.json else render(items))
    return 0 if passed(items) else 1


def cmd_close_day(args: argparse.Namespace) -> int:
    from datetime import UTC, date, datetime

    from aegis_actors.closeday.run import close_day

    s = settings_or_exit(args.settings)
    try:
        day = date.fromisoformat(args.date) if args.date else datetime.now(UTC).date()
    except ValueError:
        print(f"close-day: --date {args.date!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    steps = close_day(s, day, Path(args.out))
    width = max(len(st.name) for st in steps)
    for st in steps:
        print(st.line(width), flush=True)
    return 0 if all(st.ok for st in steps) else 1


def cmd_backtest(args: argparse.Namespace) -> int:
    from aegis_actors.backtest.api import run_backtest
    from aegis_actors.backtest.report import summary_text
    from aegis_actors.backtest.runner import BacktestError
    from aegis_actors.strategies import StrategyError

    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"backtest: --out {args.out}: exists and is not a directory", file=sys.stderr)
        return 2
    try:
        result = run_backtest(backtest_args.config_from_args(args))
    except (BacktestError, SettingsError, StrategyError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(summary_text(result.report))
    print(f"  {result.bars_per_s:,.0f} bars/s")
    print(f"  written to {result.out}/ (trades.csv, equity.csv, report.json, report.html)")
    return 0


def format_line(d: dict[str, Any]) -> str:
    ev = f" [{d['event_id']}]" if d.get("event_id") else ""
    extra = {k: v for k, v in d.items() if k not in ("ts", "level", "actor", "event_id", "msg")}
    more = f"  {json.dumps(extra, default=str)}" if extra else ""
    return (
        f"{d.get('ts', '')[11:23]} {d.get('level', ''):<8} {d.get('actor', ''):<10}{ev} "
        f"{d.get('msg', '')}{more}"
    )


def event_path(event_id: str, seen: list[tuple[str, str]]) -> str:
    """One line: the actors an event passed through, in order, and how long it took."""
    if not seen:
        return f"event {event_id}: no lines"
    hops: list[str] = []
    for _ts, actor in seen:
        if not hops or hops[-1] != actor:
            hops.append(actor)
    took = ""
    try:
        from datetime import datetime

        t0, t1 = datetime.fromisoformat(seen[0][0]), datetime.fromisoformat(seen[-1][0])
        took = f" in {(t1 - t0).total_seconds() * 1000:.0f} ms"
    except ValueError:
        pass
    return f"event {event_id}: {len(seen)} lines{took}, path " + " -> ".join(hops)


def cmd_tail(args: argparse.Namespace) -> int:
    path = (
        Path(args.file)
        if args.file
        else Path(settings_or_exit(args.settings).run.log_dir, "aegis.jsonl")
    )
    if not path.exists() and not args.follow:
        print(f"no log at {path}", file=sys.stderr)
        return 1
    floor = LEVELS.index(args.level)

    def show(line: str) -> None:
        try:
            d = json.loads(line)
        except ValueError:
            return
        if d.get("level") in LEVELS and LEVELS.index(d["level"]) < floor:
            return
        if args.event and d.get("event_id") != args.event:
            return
        if args.actor and d.get("actor") != args.actor:
            return
        print(format_line(d), flush=True)

    path_of_event: list[tuple[str, str]] = []  # (ts, actor) of each line about --event
    if args.event:
        inner = show

        def show(line: str) -> None:
            try:
                d = json.loads(line)
            except ValueError:
                return
            if d.get("event_id") == args.event:
                path_of_event.append((str(d.get("ts", "")), str(d.get("actor", ""))))
            inner(line)

    while not path.exists():
        time.sleep(0.5)
    with path.open(encoding="utf-8") as f:
        for line in f:
            show(line)
        if args.event and not args.follow:
            print(event_path(args.event, path_of_event))
            return 0 if path_of_event else 1
        while args.follow:
            line = f.readline()
            if line:
                show(line)
            else:
                time.sleep(0.2)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Ctrl-C and a reader that goes away (`| head`) end a command quietly, not with a
    traceback: Ctrl-C is how `tail -f` stops (exit 0, nothing printed); elsewhere it
    prints `interrupted` (exit 130). A closed pipe exits 0: the reader had enough."""
    try:
        return dispatch(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def dispatch(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = args.command or "run"
    if command == "run":
        return cmd_run(args)
    if command == "check":
        return cmd_check(args)
    if command == "close-day":
        return cmd_close_day(args)
    if command == "backtest":
        return cmd_backtest(args)
    if command == "optimize":
        from aegis_actors.optimize.command import main as optimize_main

        return optimize_main(args)
    if command == "tail":
        try:
            return cmd_tail(args)
        except KeyboardInterrupt:
            return 0
    if command == "admin":
        return admin_cli.main(args)
    if command == "top":
        from aegis_actors.top import run as top

        if args.url:
            url = args.url
        else:
            d = settings_or_exit(args.settings).dashboard
            url = f"http://{d.host}:{d.port}/"
        try:
            return top(url, args.every, args.once)
        except KeyboardInterrupt:
            return 0
    parser().print_help()
    return 2
