"""Backtest speed: AEGIS (sma_cross, the deterministic runtime, risk gate and ledger on)
beside backtrader and backtesting.py on the same SMA-cross strategy and the same random-walk
bars, in the same run; then the GOOG case end to end (a fresh process, start-up included).

Each engine runs `--repeat` times, interleaved (AEGIS, backtrader, backtesting.py, again),
and its best run is shown: on a shared machine the slow runs measure the neighbours.

    python scripts/bench.py backtest          # 20,000 and 200,000 bars
    python scripts/bench_backtest.py -n 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FAST, SLOW = 10, 20


def random_walk(n: int, seed: int = 7) -> list[tuple[float, float, float, float, float, float]]:
    rng = random.Random(seed)
    t0 = 1_577_836_800.0  # 2020-01-01
    close, rows = 100.0, []
    for i in range(n):
        o = close * math.exp(rng.gauss(0, 0.002))
        c = o * math.exp(rng.gauss(0, 0.01))
        hi, lo = (
            max(o, c) * (1 + abs(rng.gauss(0, 0.003))),
            min(o, c) * (1 - abs(rng.gauss(0, 0.003))),
        )
        rows.append((t0 + 60.0 * i, round(o, 4), round(hi, 4), round(lo, 4), round(c, 4), 1000.0))
        close = round(c, 4)
    return rows


def write(rows: list[tuple[float, ...]], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write("ts,open,high,low,close,volume\n")
        for r in rows:
            f.write(f"{r[0]:.0f},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]:.0f}\n")
    return path


def frame(rows: list[tuple[float, ...]]) -> Any:
    import pandas as pd

    df = pd.DataFrame(rows, columns=["ts", "Open", "High", "Low", "Close", "Volume"])
    df.index = pd.to_datetime(df.pop("ts"), unit="s")
    return df


# The other engines trade to the last bar whatever the drawdown: the capital-loss halt
# (5 % by default) is widened so AEGIS does too; the other loss limits stay as shipped.
BENCH_SETTINGS = "[watchdog]\ncapital_loss_halt_pct = 50.0\n"


def aegis(path: Path, out: Path) -> tuple[float, int, int]:
    from aegis_actors.backtest.api import BacktestConfig, run_backtest

    settings = out.parent / "bench-settings.toml"
    settings.write_text(BENCH_SETTINGS, encoding="utf-8")
    r = run_backtest(
        BacktestConfig(
            data=path,
            settings=str(settings),
            symbol="RW",
            strategy="sma_cross",
            params={"fast": FAST, "slow": SLOW},
            exits="signal",
            veto=False,
            out=out,
            html=False,
        )
    )
    halted = [k for k in r.report["outcomes"] if k not in ("hold", "ordered", "vetoed")]
    if halted:
        print(f"  (AEGIS outcomes {r.report['outcomes']})")
    return r.bars_per_s, int(r.report["fills"]), int(r.report["events"])


def backtrader(rows: list[tuple[float, ...]]) -> tuple[float, int]:
    import backtrader as bt

    class SmaCross(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=FAST), bt.ind.SMA(period=SLOW))
            self.fills = 0

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.fills += 1

        def next(self) -> None:
            if self.cross > 0:
                self.close()
                self.buy()
            elif self.cross < 0:
                self.close()
                self.sell()

    if __name__ not in sys.modules:  # loaded by bench.py from its path: backtrader looks it up
        SmaCross.__module__ = "__main__"
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame(rows)))
    cerebro.addstrategy(SmaCross)
    t = time.perf_counter()
    strat = cerebro.run()[0]
    return len(rows) / (time.perf_counter() - t), strat.fills


def backtesting_py(rows: list[tuple[float, ...]]) -> tuple[float, int]:
    import warnings

    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, FAST)
            self.slow = self.I(SMA, self.data.Close, SLOW)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.position.close()
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()
                self.sell()

    df = frame(rows)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        stats = Backtest(df, SmaCross, cash=1e9, commission=0).run()
    return len(rows) / (time.perf_counter() - t), int(len(stats._trades))


def goog_end_to_end(tmp: Path) -> tuple[float, int]:
    from backtesting.test import GOOG

    df = GOOG.rename(columns=str.lower)
    df.index.name = "ts"
    data = tmp / "goog.csv"
    df.to_csv(data, date_format="%Y-%m-%dT%H:%M:%S")
    cmd = [
        sys.executable,
        "-m",
        "aegis_actors",
        "backtest",
        "--data",
        str(data),
        "--symbol",
        "GOOG",
        "--strategy",
        "sma_cross",
        "--param",
        f"fast={FAST}",
        "--param",
        f"slow={SLOW}",
        "--exits",
        "signal",
        "--veto",
        "off",
        "--out",
        str(tmp / "goog"),
    ]
    t = time.perf_counter()
    subprocess.run(
        cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    return time.perf_counter() - t, len(df)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", type=int, action="append", help="bars (repeatable)")
    p.add_argument("--repeat", type=int, default=3, help="runs per engine (best shown)")
    args = p.parse_args()
    sizes = args.n or [20_000, 200_000]
    print(
        "backtest: SMA cross 10/20 on a random walk, bars/s (start-up excluded), same run, "
        f"best of {args.repeat} interleaved"
    )
    print(
        f"{'bars':>9}{'AEGIS':>10}{'backtrader':>12}{'backtesting.py':>16}{'AEGIS/bt':>10}"
        f"   fills (AEGIS, backtrader, trades backtesting.py)"
    )
    with tempfile.TemporaryDirectory(prefix="aegis-bench-bt-") as d:
        tmp = Path(d)
        for n in sizes:
            rows = random_walk(n)
            path = write(rows, tmp / f"rw{n}.csv")
            a = b = c = 0.0
            for _ in range(max(1, args.repeat)):
                ar, af, events = aegis(path, tmp / f"out{n}")
                br, bf = backtrader(rows)
                cr, cf = backtesting_py(rows)
                a, b, c = max(a, ar), max(b, br), max(c, cr)
            print(
                f"{n:>9,}{a:>10,.0f}{b:>12,.0f}{c:>16,.0f}{a / b:>10.2f}   {af}, {bf}, {cf}"
                f"   (AEGIS decision events: {events:,})"
            )
        took, bars = goog_end_to_end(tmp)
        print(
            f"GOOG {bars} daily bars end to end (fresh process, start-up included): "
            f"{took:.2f}s = {bars / took:,.0f} bars/s"
        )


if __name__ == "__main__":
    main()
