"""The backtest as a user runs it: a bar CSV through the same tree, on a virtual clock."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aegis_actors.backtest.bars import load_bars
from aegis_actors.backtest.runner import run_backtest

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_261_600  # 2026-01-01T10:00Z
STEP = 60
SLIP = 5.0 / 10_000  # broker.slippage_bps default


def trend_rows(n_up: int = 40, n_down: int = 40) -> list[list[str]]:
    """A clear uptrend then downtrend. Each open gaps 0.1% against the trend from the last
    close, so a fill at the next open is told apart from one at the decision's close."""
    rows, close = [], 100.0
    for i in range(n_up + n_down):
        up = i < n_up
        o = close * (0.999 if up else 1.001)
        c = o * ((1.007 if up else 0.993) + (0.001 if i % 3 == 0 else 0.0))
        hi, lo = max(o, c) * 1.001, min(o, c) * 0.999
        rows.append([str(T0 + STEP * i), f"{o:.4f}", f"{hi:.4f}", f"{lo:.4f}", f"{c:.4f}", "1000"])
        close = float(f"{c:.4f}")
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text(
        "ts,open,high,low,close,volume\n" + "".join(",".join(r) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def bars_csv(aegis_env: Path) -> Path:
    return write_csv(aegis_env / "aapl.csv", trend_rows())


def test_trend_produces_trades_and_outputs(bars_csv: Path, aegis_env: Path) -> None:
    r = run_backtest(bars_csv, out=aegis_env / "out").report
    assert r["symbols"] == ["AAPL"]  # the file stem, upper-cased
    assert r["bars"] == 80 and r["events"] == 80
    assert r["fills"] >= 4 and r["orders"] >= r["fills"]
    assert r["closed_positions"] >= 1
    trades = list(csv.DictReader((aegis_env / "out" / "trades.csv").open()))
    assert len(trades) == r["fills"]
    assert {"buy", "sell"} <= {t["side"] for t in trades}
    equity = list(csv.DictReader((aegis_env / "out" / "equity.csv").open()))
    assert len(equity) == 80
    assert float(equity[-1]["equity"]) == pytest.approx(r["final_equity"], abs=0.01)
    assert json.loads((aegis_env / "out" / "report.json").read_text()) == r
    assert sum(r["outcomes"].values()) == r["events"]


def test_same_data_same_results(bars_csv: Path, aegis_env: Path) -> None:
    run_backtest(bars_csv, out=aegis_env / "a")
    run_backtest(bars_csv, out=aegis_env / "b")
    for name in ("trades.csv", "equity.csv", "report.json"):
        assert (aegis_env / "a" / name).read_bytes() == (aegis_env / "b" / name).read_bytes()


def test_no_look_ahead(bars_csv: Path, aegis_env: Path) -> None:
    """Every fill comes on a bar after the one its order was decided on, at that bar's
    open or close (slipped, or the order's limit), never at the decision bar's close."""
    run_backtest(bars_csv, out=aegis_env / "out")
    bars = {b.ts: b for b in load_bars(bars_csv).bars}
    times = sorted(bars)
    con = sqlite3.connect(aegis_env / "out" / "aegis.db")
    rows = con.execute(
        "SELECT f.ts, f.price, o.created_at, o.limit_price, o.intent FROM fills f "
        "JOIN orders o ON o.client_order_id = f.client_order_id"
    ).fetchall()
    con.close()
    assert any(intent == "entry" for *_, intent in rows)
    next_bar_fills = 0
    for ts, price, decided, limit, _intent in rows:
        assert decided in bars, "orders are decided on a bar's close time"
        assert ts > decided
        fill_bar = bars[ts]
        seen = (fill_bar.open, fill_bar.close)
        allowed = [p * k for p in seen for k in (1.0, 1 + SLIP, 1 - SLIP)]
        allowed += [limit] if limit else []
        assert any(price == pytest.approx(a, rel=1e-9) for a in allowed), (price, seen, limit)
        assert price != pytest.approx(bars[decided].close, rel=1e-6)
        if ts == times[times.index(decided) + 1] and price != pytest.approx(fill_bar.close):
            next_bar_fills += 1  # filled at the very next bar's open
    assert next_bar_fills >= 1


def test_bad_rows_counted_and_skipped(aegis_env: Path) -> None:
    rows = trend_rows(30, 0)
    text = "ts,open,high,low,close,volume,symbol\n"
    for i, r in enumerate(rows):
        text += ",".join(r) + ",MSFT\n"
        if i == 5:
            text += "not-a-time,1,1,1,1,1,MSFT\n"
            text += f"{T0},100,101,99,100,10,MSFT\n"  # backwards in time
            text += f"{r[0]},100,101,99,100,10,MSFT\n"  # the same bar again
            text += f"{T0 + 10**6},abc,1,1,1,1,MSFT\n"
            text += f"{T0 + 10**6},1,1,1,1,-5,MSFT\n"
            text += "1,2,3\n"
    data = aegis_env / "mixed.csv"
    data.write_text(text, encoding="utf-8")
    r = run_backtest(data, out=aegis_env / "out").report
    assert r["symbols"] == ["MSFT"]  # the column wins over the file stem
    assert r["bars"] == 30 and r["events"] == 30
    assert r["bad_rows"] == {
        "bad_columns": 1,
        "bad_price": 1,
        "bad_timestamp": 1,
        "bad_volume": 1,
        "duplicate_bar": 2,  # the backwards row repeats the first bar's time
    }
    assert r["data_notes"] == {"sorted_rows": 1}


def test_iso_timestamps_and_symbol_option(aegis_env: Path) -> None:
    data = aegis_env / "bars.csv"
    data.write_text(
        "ts,open,high,low,close,volume\n"
        "2026-01-02T10:00:00Z,10,11,9,10.5,100\n"
        "2026-01-02T10:01:00,10.5,11,10,10.8,100\n",
        encoding="utf-8",
    )
    bars = load_bars(data, "SPY").bars
    assert [b.symbol for b in bars] == ["SPY", "SPY"]
    assert bars[1].ts - bars[0].ts == 60.0


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "aegis_actors", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    p = cli("backtest", "--data", str(tmp_path / "nope.csv"), cwd=tmp_path)
    assert p.returncode == 2
    assert "nope.csv" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "backtest-out").exists()


def test_cli_file_without_columns_exits_2(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    p = cli("backtest", "--data", "x.csv", cwd=tmp_path)
    assert p.returncode == 2
    assert "missing columns" in p.stderr


def test_cli_help_and_summary(tmp_path: Path) -> None:
    h = cli("backtest", "--help", cwd=tmp_path)
    assert h.returncode == 0 and "--data" in h.stdout and "--symbol" in h.stdout
    write_csv(tmp_path / "nvda.csv", trend_rows(25, 25))
    p = cli("backtest", "--data", "nvda.csv", "--out", "res", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "backtest: NVDA: 50 bars" in p.stdout and "max drawdown" in p.stdout
    report = json.loads((tmp_path / "res" / "report.json").read_text())
    assert f"fills {report['fills']}" in p.stdout


def test_run_with_replay_feed_runs_the_backtest(tmp_path: Path) -> None:
    write_csv(tmp_path / "spy.csv", trend_rows(15, 0))
    (tmp_path / "settings.toml").write_text(
        '[feed]\nkind = "replay"\nreplay_file = "spy.csv"\n', encoding="utf-8"
    )
    p = cli("run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "backtest: SPY: 15 bars" in p.stdout
    assert (tmp_path / "backtest-out" / "report.json").is_file()
