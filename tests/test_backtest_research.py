"""The backtest as a research tool: the deterministic runtime's parity with the threaded one,
byte-identical reruns, strategies' signals against hand-computed series, a cross-check with
backtesting.py on its GOOG data, bad data, the API's figures and report.html in Chromium."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_backtest import SLIP, T0, trend_rows, write_csv

from aegis_actors.backtest.api import BacktestConfig, run_backtest
from aegis_actors.backtest.runner import BacktestError
from aegis_actors.strategies import StrategyError, load_strategy, parse_params

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUTS = ("trades.csv", "equity.csv", "report.json", "report.html")


def ledger(db: Path) -> list[tuple[object, ...]]:
    """Orders and decisions without their ids (which carry each run's random run id)."""
    con = sqlite3.connect(db)
    try:
        orders = con.execute(
            "SELECT symbol, side, qty, order_type, intent, status, created_at "
            "FROM orders ORDER BY created_at, id"
        ).fetchall()
        decisions = con.execute(
            "SELECT symbol, json_extract(decision, '$.action'), outcome, created_at "
            "FROM decisions ORDER BY created_at, id"
        ).fetchall()
    finally:
        con.close()
    return orders + decisions


@pytest.fixture
def trend(aegis_env: Path) -> Path:
    return write_csv(aegis_env / "aapl.csv", trend_rows())


def wave_rows(n: int = 160, period: int = 40) -> list[list[str]]:
    """Closes on a wave (several crosses each way); each open gaps from the last close."""
    rows, close = [], 100.0
    for i in range(n):
        up = (i // (period // 2)) % 2 == 0
        o = close * (1.001 if up else 0.999)
        c = o * (1.006 if up else 0.994)
        hi, lo = max(o, c) * 1.001, min(o, c) * 0.999
        rows.append([str(T0 + 60 * i), f"{o:.4f}", f"{hi:.4f}", f"{lo:.4f}", f"{c:.4f}", "1000"])
        close = float(f"{c:.4f}")
    return rows


@pytest.fixture
def wave(aegis_env: Path) -> Path:
    return write_csv(aegis_env / "wave.csv", wave_rows())


# -- the runtimes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy",
    [
        {},  # the aegis rules, every bar an event
        {
            "strategy": "sma_cross",
            "params": {"fast": 3, "slow": 8},
            "exits": "signal",
            "veto": False,
        },  # signal bars only; the tree sleeps through quiet ones
    ],
    ids=["aegis", "sma_cross"],
)
def test_parity_inline_and_threaded_runtimes(strategy: dict[str, object], aegis_env: Path) -> None:
    """The same bars through the threaded pykka runtime and the one-thread deterministic
    one: the same decisions, orders, fills and equity."""
    data = write_csv(aegis_env / "wave.csv", wave_rows(200))
    a = run_backtest(
        BacktestConfig(data=data, out=aegis_env / "inline", runtime="inline", **strategy)  # type: ignore[arg-type]
    )
    b = run_backtest(
        BacktestConfig(data=data, out=aegis_env / "threaded", runtime="threaded", **strategy)  # type: ignore[arg-type]
    )
    assert a.report["orders"] > 4
    assert ledger(a.out / "aegis.db") == ledger(b.out / "aegis.db")
    assert a.trades == b.trades and a.equity == b.equity
    assert a.report == b.report


def test_same_data_same_bytes(wave: Path, aegis_env: Path) -> None:
    cfg = {"data": wave, "strategy": "sma_cross", "params": {"fast": 3, "slow": 8}}
    run_backtest(BacktestConfig(**cfg, out=aegis_env / "a"))  # type: ignore[arg-type]
    run_backtest(BacktestConfig(**cfg, out=aegis_env / "b"))  # type: ignore[arg-type]
    for name in OUTPUTS:
        assert (aegis_env / "a" / name).read_bytes() == (aegis_env / "b" / name).read_bytes()


# -- strategies ----------------------------------------------------------------------------


def test_sma_cross_signals_by_hand() -> None:
    closes = [1, 2, 3, 2, 1, 1, 2, 3]
    # sma2: -, 1.5, 2.5, 2.5, 1.5, 1.0, 1.5, 2.5 ; sma3: -, -, 2, 2.33, 2, 1.33, 1.33, 2
    # fast crosses below slow at i=4 (2.5>=2.33, 1.5<2); above at i=6 (1.0<=1.33, 1.5>1.33)
    s = load_strategy("sma_cross", {"fast": 2, "slow": 3})
    assert s is not None
    assert s.signals(closes) == [0, 0, 0, 0, -1, 0, 1, 0]


def test_momentum_signals_by_hand() -> None:
    closes = [100, 100, 103, 103, 99, 98, 101]
    # 2-bar return: -, -, +3%, +3%, -3.9%, -4.9%, +2.0%; threshold 2.5%: +1 first at i=2,
    # -1 first at i=4; +2.0% is inside the band: the state stays -1, no new signal
    s = load_strategy("momentum", {"lookback": 2, "threshold": 0.025})
    assert s is not None
    assert s.signals(closes) == [0, 0, 1, 0, -1, 0, 0]


def test_rsi_signals_by_hand() -> None:
    closes = [10, 11, 12, 13, 12, 11, 10, 9, 10, 11]
    # Wilder RSI(2): i=2: gains 1,1 -> 100; i=3 100; i=4: g=.5 l=.5 -> 50; i=5: g=.25 l=.75
    # -> 25 (crosses below 30: +1); i=6: 12.5; i=7: 6.25; i=8: g=.5 l=.375 -> 57.1;
    # i=9: g=.75 l=.1875 -> 80 (crosses above 70: -1)
    s = load_strategy("rsi", {"period": 2, "low": 30, "high": 70})
    assert s is not None
    assert s.signals(closes) == [0, 0, 0, 0, 0, 1, 0, 0, 0, -1]


@pytest.mark.parametrize("name", ["sma_cross", "momentum", "rsi"])
def test_signals_are_causal(name: str) -> None:
    closes = [float(c) for r in trend_rows(30, 30) for c in r[4:5]]
    s = load_strategy(name)
    assert s is not None
    full = s.signals(closes)
    assert any(full)
    for k in range(1, len(closes)):
        assert s.signals(closes[:k]) == full[:k]


def test_user_strategy_file_and_bad_params(aegis_env: Path, trend: Path) -> None:
    mine = aegis_env / "mine.py"
    mine.write_text(
        "class EveryTenth:\n"
        "    name = 'every_tenth'\n"
        "    def __init__(self, every=10):\n"
        "        self.every = int(every)\n"
        "    def signals(self, closes):\n"
        "        return [1 if i % self.every == 5 else -1 if i % self.every == 0 and i else 0\n"
        "                for i in range(len(closes))]\n",
        encoding="utf-8",
    )
    r = run_backtest(
        BacktestConfig(
            data=trend,
            strategy=f"{mine}:EveryTenth",
            params={"every": 20},
            exits="signal",
            veto=False,
            out=aegis_env / "out",
        )
    )
    entries = [t for t in r.trades if t.intent == "entry"]
    assert entries and entries[0].ts == T0 + 60 * 6  # signal on bar 5, filled at bar 6's open
    with pytest.raises(StrategyError, match="unknown param nope"):
        load_strategy("sma_cross", {"nope": 1})
    with pytest.raises(StrategyError, match="not a number"):
        parse_params(["fast=abc"])
    with pytest.raises(BacktestError, match="unknown strategy"):
        run_backtest(BacktestConfig(data=trend, strategy="nope", out=aegis_env / "x"))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:.*dayofweek")
def test_sma_cross_matches_backtesting_py_on_goog(aegis_env: Path) -> None:
    """sma_cross with --exits signal --veto off, long only, against backtesting.py's own
    SMA-cross example on its GOOG data: the same entry and exit dates."""
    pd = pytest.importorskip("pandas")
    bt = pytest.importorskip("backtesting")
    from backtesting.lib import crossover
    from backtesting.test import GOOG, SMA

    class SmaCross(bt.Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    theirs = bt.Backtest(GOOG, SmaCross, cash=1_000_000, commission=0).run()._trades
    df = GOOG.rename(columns=str.lower)
    df.index.name = "ts"
    data = aegis_env / "goog.csv"
    df.to_csv(data, date_format="%Y-%m-%dT%H:%M:%S")
    r = run_backtest(
        BacktestConfig(
            data=data,
            symbol="GOOG",
            strategy="sma_cross",
            params={"fast": 10, "slow": 20, "short": 0},
            exits="signal",
            veto=False,
            out=aegis_env / "out",
        )
    )
    entries = [pd.Timestamp(t.ts, unit="s") for t in r.trades if t.intent == "entry"]
    exits = [pd.Timestamp(t.ts, unit="s") for t in r.trades if t.intent == "exit"]
    assert len(theirs) > 40
    # backtesting.py leaves out the trade still open at the end; we list its entry
    assert entries[: len(theirs)] == list(theirs.EntryTime)
    assert exits == list(theirs.ExitTime)
    assert r.report["from"] == "2004-08-19T00:00:00Z"  # ISO in, ISO out
    first = next(csv.DictReader((r.out / "trades.csv").open()))
    assert first["ts"] == "2004-12-06T00:00:00Z"


def test_metrics_typed_and_consistent(wave: Path, aegis_env: Path) -> None:
    r = run_backtest(
        BacktestConfig(
            data=wave,
            strategy="sma_cross",
            params={"fast": 3, "slow": 8},
            exits="signal",
            veto=False,
            out=aegis_env / "out",
        )
    )
    m = r.metrics
    for key in ("sharpe", "sortino", "return_pct", "calmar", "profit_factor", "trades"):
        assert key in m
    assert m["trades"] == r.report["closed_positions"] >= 1
    assert m["final_equity"] == pytest.approx(r.equity[-1][1], abs=0.01)
    assert m["return_pct"] == pytest.approx((r.equity[-1][1] / 100_000 - 1) * 100, abs=1e-3)
    assert r.bars_per_s > 0
    acc = r.report["accuracy"]
    assert acc["execution_success_pct"] == 100.0
    assert sum(r.report["posture_time_pct"].values()) == pytest.approx(100.0)


# -- data ----------------------------------------------------------------------------------


def test_unsorted_input_sorted_and_reported_or_refused(aegis_env: Path) -> None:
    rows = trend_rows(50, 50)
    newest_first = write_csv(aegis_env / "rev.csv", list(reversed(rows)))
    r = run_backtest(BacktestConfig(data=newest_first, symbol="X", out=aegis_env / "a"))
    assert r.report["bars"] == 100
    assert r.report["data_notes"] == {"sorted_rows": 99}
    ordered = run_backtest(
        BacktestConfig(data=write_csv(aegis_env / "ok.csv", rows), symbol="X", out=aegis_env / "b")
    )
    assert r.trades == ordered.trades
    with pytest.raises(BacktestError, match="out of time order"):
        run_backtest(BacktestConfig(data=newest_first, strict=True, out=aegis_env / "c"))


def test_absurd_timestamp_and_undecodable_bytes_cost_one_row_each(aegis_env: Path) -> None:
    rows = trend_rows(20, 20)
    body = b"ts,open,high,low,close,volume\n"
    for i, r in enumerate(rows):
        line = ",".join(r).encode() + b"\n"
        if i == 10:
            line = b"1e20," + line.split(b",", 1)[1]
        if i == 20:
            line = line.replace(b",1000", b",10\xff00")
        body += line
    data = aegis_env / "bad.csv"
    data.write_bytes(body)
    r = run_backtest(BacktestConfig(data=data, out=aegis_env / "out"))
    assert r.report["bad_rows"] == {"absurd_timestamp": 1, "undecodable": 1}
    assert r.report["bars"] == 38


def test_several_files_window_and_symbols(aegis_env: Path) -> None:
    a = write_csv(aegis_env / "aaa.csv", trend_rows(30, 30))
    b = write_csv(aegis_env / "bbb.csv", trend_rows(20, 40))
    r = run_backtest(
        BacktestConfig(
            data=[a, b], start=str(T0 + 60 * 5), end=str(T0 + 60 * 50), out=aegis_env / "o"
        )
    )
    assert r.report["symbols"] == ["AAA", "BBB"]
    assert r.report["bars"] == 90  # bars 5..49 of each
    assert len(r.equity) == 45  # one equity point per bar time, over both symbols


# -- report.html and the command line ------------------------------------------------------


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="no chromium")
def test_report_html_renders_in_chromium(wave: Path, aegis_env: Path) -> None:
    r = run_backtest(
        BacktestConfig(
            data=wave,
            strategy="sma_cross",
            params={"fast": 3, "slow": 8},
            exits="signal",
            veto=False,
            out=aegis_env / "out",
        )
    )
    page = (r.out / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<script" not in page
    assert CHROMIUM is not None
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            (r.out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert 'class="equity"' in dom and 'class="drawdown"' in dom
    assert dom.count('class="trade ') == len(r.trades)
    assert dom.count("<tr><td>") == len(r.trades)


def test_cli_strategy_flags_and_exit_codes(trend: Path, aegis_env: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "aegis_actors", "backtest", "--data", str(trend)]
    ok = subprocess.run(
        [
            *base,
            "--strategy",
            "sma_cross",
            "--param",
            "fast=3",
            "--param",
            "slow=8",
            "--exits",
            "signal",
            "--veto",
            "off",
            "--out",
            str(aegis_env / "cli"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "strategy sma_cross fast=3 slow=8" in ok.stdout and "Sharpe" in ok.stdout
    assert (aegis_env / "cli" / "report.html").is_file()
    bad = subprocess.run(
        [*base, "--strategy", "sma_cross", "--param", "fast=x"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    params = aegis_env / "p.toml"
    params.write_text("fast = 3\nslow = 9\n", encoding="utf-8")
    from_file = subprocess.run(
        [
            *base,
            "--strategy",
            "sma_cross",
            "--params",
            str(params),
            "--param",
            "slow=8",
            "--out",
            str(aegis_env / "cli2"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert from_file.returncode == 0, from_file.stderr
    assert "strategy sma_cross fast=3 slow=8" in from_file.stdout  # --param wins


def test_vix_series_moves_the_posture_in_simulated_time(wave: Path, aegis_env: Path) -> None:
    """A calm VIX, then a spike: the posture's 30-minute evaluation (simulated time) goes
    offensive, then defensive; the VIX is never traded."""
    vix = aegis_env / "vix.csv"
    rows = [
        [str(T0 + 60 * i), *(["12", "12", "12", "12"] if i < 60 else ["32", "32", "32", "32"]), "0"]
        for i in range(0, 160, 5)
    ]
    write_csv(vix, rows)
    r = run_backtest(BacktestConfig(data=wave, vix=vix, out=aegis_env / "out"))
    shares = r.report["posture_time_pct"]
    assert shares.get("offensive", 0) > 20 and shares.get("defensive", 0) > 20, shares
    assert r.report["symbols"] == ["WAVE"]
    assert all(t.symbol == "WAVE" for t in r.trades)
    con = sqlite3.connect(r.out / "aegis.db")
    changes = con.execute("SELECT new, ts FROM posture_changes ORDER BY id").fetchall()
    con.close()
    spike = T0 + 60 * 60  # the first reading of 32
    to_defensive = [ts for new, ts in changes if new == "defensive"]
    # the first 30-minute evaluation after the spike, on simulated time, and not before it
    assert to_defensive and spike < to_defensive[0] <= spike + 1800
    # a strategy whose quiet bars leave the tree asleep: the posture moves at the same times
    sleepy = run_backtest(
        BacktestConfig(
            data=wave,
            vix=vix,
            strategy="sma_cross",
            params={"fast": 3, "slow": 8},
            exits="signal",
            out=aegis_env / "sleepy",
        )
    )
    assert sleepy.report["posture_time_pct"] == shares
    # the same series as a VIX symbol inside the data does the same, and is not traded
    both = aegis_env / "both.csv"
    text = "ts,open,high,low,close,volume,symbol\n"
    text += "".join(",".join(row) + ",WAVE\n" for row in wave_rows())
    text += "".join(",".join(row) + ",VIX\n" for row in rows)
    both.write_text(text, encoding="utf-8")
    r2 = run_backtest(BacktestConfig(data=both, out=aegis_env / "out2"))
    assert r2.report["symbols"] == ["WAVE"]
    assert r2.report["posture_time_pct"] == shares


def test_llm_roles_answered_from_the_cache_on_a_rerun(aegis_env: Path) -> None:
    """--roles llm against the local LLM server: the first run calls it, the second makes
    no HTTP call at all, answers from the on-disk cache, and trades the same."""
    from llm_fake import FakeLlm
    from roles_harness import llm_roles

    fake = FakeLlm()
    try:
        lines = []
        for role, cfg in llm_roles(fake.url).items():
            lines.append(f"[roles.{role}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
        settings = aegis_env / "llm.toml"
        settings.write_text("\n".join(lines) + "\n", encoding="utf-8")
        data = write_csv(aegis_env / "bars.csv", trend_rows(12, 12))
        cfg = BacktestConfig(data=data, settings=str(settings), out=aegis_env / "out")
        first = run_backtest(cfg)
        calls = len(fake.calls())
        assert calls == 3 * 24  # three roles, every bar
        assert first.report["llm"]["calls"] == calls and first.report["llm"]["cache_hits"] == 0
        assert first.report["llm"]["tokens"] > 0 and first.report["llm"]["cost_usd"] > 0
        assert first.trades
        again = run_backtest(cfg)
        assert len(fake.calls()) == calls  # not one more request
        assert again.report["llm"]["calls"] == 0
        assert again.report["llm"]["cache_hits"] == calls
        assert again.trades == first.trades and again.equity == first.equity
    finally:
        fake.close()


def test_no_look_ahead_on_any_fill_with_signal_exits(wave: Path, aegis_env: Path) -> None:
    """Every order of a strategy run was decided on a bar's close and filled at the very
    next bar's open (market orders, slipped), never at the deciding bar's prices."""
    from aegis_actors.backtest.bars import load_bars

    r = run_backtest(
        BacktestConfig(
            data=wave,
            strategy="sma_cross",
            params={"fast": 3, "slow": 8},
            exits="signal",
            veto=False,
            out=aegis_env / "out",
        )
    )
    bars = {b.ts: b for b in load_bars(wave).bars}
    times = sorted(bars)
    con = sqlite3.connect(r.out / "aegis.db")
    rows = con.execute(
        "SELECT f.ts, f.price, f.side, o.created_at, o.order_type FROM fills f "
        "JOIN orders o ON o.client_order_id = f.client_order_id"
    ).fetchall()
    con.close()
    assert len(rows) == len(r.trades) >= 6
    slip = 5.0 / 10_000
    for ts, price, side, decided, order_type in rows:
        assert order_type == "market"
        assert ts == times[times.index(decided) + 1]  # the next bar
        expected = bars[ts].open * (1 + slip if side == "buy" else 1 - slip)
        assert price == pytest.approx(expected, rel=1e-9)


def test_a_replay_pages_nobody(aegis_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's contacts and Slack hook stay out of a backtest, and only a severe alert
    escalates (nobody can ack a replay); the summaries and session saves run once a
    simulated day instead of once a woken bar."""
    from aegis_actors.backtest.runner import backtest_settings

    monkeypatch.setenv("AEGIS_ALERTS__SLACK_URL", "https://hooks.example/x")
    mine = aegis_env / "mine.toml"
    mine.write_text('[[alerts.first]]\nname = "ops"\nphone = "+100"\n', encoding="utf-8")
    cfg = BacktestConfig(data=aegis_env / "x.csv", settings=str(mine))
    s = backtest_settings(cfg, aegis_env / "x.csv", ["X"], aegis_env, [0.0, 60.0], aegis_env)
    a = s.alerts
    assert (a.first, a.second, a.third, a.slack_url.get_secret_value()) == ([], [], [], "")
    assert a.escalate_from == "severe"
    assert s.watchdog.latency_log_every_s == s.store.save_every_s == 86400.0


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from aegis_actors.backtest.replay import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    p = Progress(200, True)
    for i in range(1, 201):
        p.update(i)
    assert tty.getvalue().count("\r") == 101  # 0 % to 100 %, once each
    assert tty.getvalue().endswith("100% 200/200 bars\n")
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    Progress(200, True).update(100)
    assert pipe.getvalue() == ""


def test_a_broken_user_strategy_is_one_line(aegis_env: Path, trend: Path) -> None:
    bad = aegis_env / "bad.py"
    bad.write_text(
        "class Short:\n"
        "    name = 'short'\n"
        "    def signals(self, closes):\n"
        "        return [0, 1]\n"
        "class Boom:\n"
        "    name = 'boom'\n"
        "    def signals(self, closes):\n"
        "        raise KeyError('close')\n",
        encoding="utf-8",
    )
    with pytest.raises(BacktestError, match="2 signals for 80 bars"):
        run_backtest(BacktestConfig(data=trend, strategy=f"{bad}:Short", out=aegis_env / "a"))
    with pytest.raises(BacktestError, match="signals failed: KeyError"):
        run_backtest(BacktestConfig(data=trend, strategy=f"{bad}:Boom", out=aegis_env / "b"))


def test_performance_figures_by_hand() -> None:
    """A hand-made equity curve and two round trips: every figure checked by arithmetic."""
    from aegis_actors.backtest.report import Trade, performance

    day = 86400.0
    equity = [(0.0, 100.0), (day, 110.0), (2 * day, 99.0), (3 * day, 104.5), (4 * day, 121.0)]
    trades = [
        Trade(0.5 * day, "X", "buy", 1, 100.0, 0.0, "entry"),
        Trade(1.5 * day, "X", "sell", 1, 110.0, 0.0, "exit"),  # +10
        Trade(2.5 * day, "X", "buy", 1, 110.0, 0.0, "entry"),
        Trade(3.5 * day, "X", "sell", 1, 105.0, 0.0, "exit"),  # -5
    ]
    p = performance(equity, 100.0, trades)
    assert p["return_pct"] == 21.0
    assert p["max_drawdown_pct"] == 10.0  # 110 -> 99
    assert p["max_drawdown_bars"] == 2 and p["max_drawdown_days"] == 3.0  # back above at day 4
    assert p["trades"] == 2 and p["win_rate_pct"] == 50.0 and p["avg_trade"] == 2.5
    assert p["profit_factor"] == 2.0  # 10 / 5
    assert p["exposure_pct"] == 40.0  # held at the ends of day 1 and day 3: 2 of 5 bars
    assert p["sharpe"] is not None and p["sortino"] is not None and p["sortino"] > p["sharpe"]


def test_signals_that_can_only_hold_raise_no_event(aegis_env: Path) -> None:
    """Long only with signal exits: a buy while long, or a sell while flat, would end in
    a hold, so it raises no event; the others order, filled at the next bar's open."""
    mine = aegis_env / "fixed.py"
    mine.write_text(
        "AT = {10: 1, 20: 1, 30: -1, 40: -1, 50: -1, 60: 1, 70: -1}\n"
        "class Fixed:\n"
        "    name = 'fixed'\n"
        "    short = False\n"
        "    def signals(self, closes):\n"
        "        return [AT.get(i, 0) for i in range(len(closes))]\n",
        encoding="utf-8",
    )
    data = write_csv(aegis_env / "wave.csv", wave_rows(100))
    r = run_backtest(
        BacktestConfig(
            data=data,
            strategy=f"{mine}:Fixed",
            exits="signal",
            veto=False,
            out=aegis_env / "out",
        )
    )
    assert r.report["events"] == 4  # bars 10, 30, 60, 70; not 20 (long), 40 or 50 (flat)
    assert r.report["outcomes"] == {"ordered": 4}
    assert [(t.side, t.ts) for t in r.trades] == [
        ("buy", T0 + 60 * 11),
        ("sell", T0 + 60 * 31),
        ("buy", T0 + 60 * 61),
        ("sell", T0 + 60 * 71),
    ]


def test_a_reversal_closes_and_enters_at_the_next_open(aegis_env: Path) -> None:
    """With signal exits a long/short strategy reverses on the opposite signal in one
    decision: the close and the opposite entry are both market orders decided on the
    signal bar's close and filled at the next bar's open, close first; each order once."""
    mine = aegis_env / "fixed.py"
    mine.write_text(
        "AT = {10: 1, 30: -1, 50: 1, 60: 1, 70: -1}\n"
        "class Fixed:\n"
        "    name = 'fixed'\n"
        "    def signals(self, closes):\n"
        "        return [AT.get(i, 0) for i in range(len(closes))]\n",
        encoding="utf-8",
    )
    half = aegis_env / "half.toml"  # every posture buys half the equity: sizes by hand
    half.write_text(
        "[watchdog]\ncapital_loss_halt_pct = 50.0\n"
        + "".join(
            f"[posture.{p}]\nentry_size = 0.5\n" for p in ("offensive", "guerrilla", "defensive")
        ),
        encoding="utf-8",
    )
    rows = wave_rows(100)
    data = write_csv(aegis_env / "wave.csv", rows)
    r = run_backtest(
        BacktestConfig(
            data=data,
            strategy=f"{mine}:Fixed",
            exits="signal",
            veto=False,
            settings=str(half),
            out=aegis_env / "out",
        )
    )
    opens = [float(x[1]) for x in rows]
    closes = [float(x[4]) for x in rows]
    cash, held, want = 100_000.0, 0.0, []
    for i, sig in ((10, 1), (30, -1), (50, 1), (70, -1)):  # bar 60: already long, no event
        equity = cash + held * closes[i]  # marked at the signal bar's close
        qty = float(int(0.5 * equity / closes[i]))
        side = "buy" if sig > 0 else "sell"
        orders = ([("exit", side, abs(held))] if held else []) + [("entry", side, qty)]
        for intent, sd, q in orders:  # both at the next open, slipped, close first
            price = opens[i + 1] * (1 + SLIP if sd == "buy" else 1 - SLIP)
            fee = max(1.0, q * 0.005)
            signed = q if sd == "buy" else -q
            cash -= signed * price + fee
            held += signed
            want.append((intent, sd, q, T0 + 60 * i, T0 + 60 * (i + 1), price))
    con = sqlite3.connect(r.out / "aegis.db")
    got = con.execute(
        "SELECT o.intent, o.side, o.qty, o.created_at, f.ts, f.price FROM orders o "
        "JOIN fills f ON f.client_order_id = o.client_order_id ORDER BY f.id"
    ).fetchall()
    n_orders = con.execute(
        "SELECT count(*), count(DISTINCT client_order_id) FROM orders"
    ).fetchone()
    con.close()
    assert [g[:5] for g in got] == [w[:5] for w in want]
    assert [g[5] for g in got] == pytest.approx([w[5] for w in want], rel=1e-9)
    assert n_orders == (7, 7)  # one entry, three reversals of two orders: none twice
    assert (r.report["events"], r.report["outcomes"]) == (4, {"ordered": 4})
    assert r.metrics["final_equity"] == pytest.approx(cash + held * closes[-1], abs=0.006)


def test_sma_cross_reversals_match_backtesting_py_on_goog(aegis_env: Path) -> None:
    """Long and short: on the opposite cross backtesting.py closes and enters the other
    side; so does sma_cross with --exits signal --veto off: the same sides and dates."""
    pytest.importorskip("pandas")
    bt = pytest.importorskip("backtesting")
    from backtesting.lib import crossover
    from backtesting.test import GOOG, SMA

    class SmaCross(bt.Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, 10)
            self.slow = self.I(SMA, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.position.close()
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()
                self.sell()

    theirs = bt.Backtest(GOOG, SmaCross, cash=1_000_000, commission=0).run()._trades
    df = GOOG.rename(columns=str.lower)
    df.index.name = "ts"
    data = aegis_env / "goog.csv"
    df.to_csv(data, date_format="%Y-%m-%dT%H:%M:%S")
    r = run_backtest(
        BacktestConfig(
            data=data,
            symbol="GOOG",
            strategy="sma_cross",
            params={"fast": 10, "slow": 20},
            exits="signal",
            veto=False,
            out=aegis_env / "out",
            html=False,
        )
    )
    at = [(t.ts, t.side) for t in r.trades if t.intent == "entry"]
    out = [(t.ts, t.side) for t in r.trades if t.intent == "exit"]
    sides = ["buy" if s > 0 else "sell" for s in theirs.Size]
    their_in = [(t.timestamp(), s) for t, s in zip(theirs.EntryTime, sides, strict=True)]
    flip = {"buy": "sell", "sell": "buy"}
    their_out = [(t.timestamp(), flip[s]) for t, s in zip(theirs.ExitTime, sides, strict=True)]
    assert len(theirs) > 80 and {s for _, s in their_in} == {"buy", "sell"}
    assert at[: len(theirs)] == their_in  # the trade still open at the end: ours only
    assert out == their_out


def test_portfolio_risk_across_symbols(aegis_env: Path) -> None:
    """Two symbols in one portfolio: the posture's max_positions (here 1) holds across
    them, so the second symbol's entry is refused while the first is held."""
    settings = aegis_env / "one.toml"
    settings.write_text(
        "".join(
            f"[posture.{p}]\nmax_positions = 1\n" for p in ("offensive", "guerrilla", "defensive")
        ),
        encoding="utf-8",
    )
    a = write_csv(aegis_env / "aaa.csv", wave_rows(160))
    b = write_csv(aegis_env / "bbb.csv", wave_rows(160, period=30))
    r = run_backtest(
        BacktestConfig(
            data=[a, b],
            strategy="sma_cross",
            params={"fast": 3, "slow": 8, "short": 0},
            exits="signal",
            veto=False,
            settings=str(settings),
            out=aegis_env / "out",
        )
    )
    held: dict[str, float] = {}
    for t in r.trades:
        held[t.symbol] = held.get(t.symbol, 0.0) + (t.qty if t.side == "buy" else -t.qty)
        assert sum(1 for q in held.values() if q) <= 1
    assert {t.symbol for t in r.trades} == {"AAA", "BBB"}
    assert r.report["outcomes"].get("refused", 0) >= 1
