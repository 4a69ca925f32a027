"""The command line as a user runs it: a real subprocess, real signals, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    e.update(PYTHONPATH=str(ROOT), AEGIS_DASHBOARD__PORT="0", **extra)
    return e


def aegis(*args: str, cwd: Path, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aegis_actors", *args],
        cwd=cwd,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_for_trades_on_paper_and_exits_zero(tmp_path: Path) -> None:
    r = aegis("--for", "4", cwd=tmp_path, AEGIS_FEED__TICK_INTERVAL_S="0.05")
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "stopped cleanly" in last
    lines = [json.loads(x) for x in (tmp_path / "logs" / "aegis.jsonl").read_text().splitlines()]
    assert lines[-1]["msg"].startswith("AEGIS stopped cleanly")
    assert any(x["actor"] == "execution" and "accepted" in x["msg"] for x in lines), (
        "it placed orders on the paper broker"
    )
    assert (tmp_path / "var" / "aegis.db").exists()


def test_a_live_run_refuses_a_ledger_without_fsync(tmp_path: Path) -> None:
    r = aegis("--for", "1", cwd=tmp_path, AEGIS_STORE__SQLITE_SYNCHRONOUS="normal")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "settings: store.sqlite_synchronous: 'normal' is for a replay only; a live run "
        "fsyncs every order's write-ahead ('full')"
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_tree_in_reverse_order_and_exits_zero(tmp_path: Path, sig: int) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "aegis_actors", "run"],
        cwd=tmp_path,
        env=env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stderr is not None
    seen = []
    for line in p.stderr:  # wait until it runs, from its own words
        seen.append(line)
        if "AEGIS running" in line:
            break
    t0 = time.monotonic()
    p.send_signal(sig)
    rest = p.stderr.read()
    code = p.wait(timeout=15)
    took = time.monotonic() - t0
    assert code == 0, "".join(seen) + rest
    assert took < 10
    assert "stopped cleanly" in rest.strip().splitlines()[-1]


def test_bad_setting_in_environment_exits_2_with_one_line(tmp_path: Path) -> None:
    r = aegis("--for", "1", cwd=tmp_path, AEGIS_FEED__NOPE="1")
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == "settings: unknown key feed.nope (environment variable AEGIS_FEED__NOPE)"
    )


def test_bad_value_in_settings_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[roles.analyst]\ntimeout_s = "soon"\n')
    r = aegis("--settings", str(f), "--for", "1", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("settings: roles.analyst.timeout_s:"), lines


def test_missing_settings_file_exits_2(tmp_path: Path) -> None:
    r = aegis("--settings", "nope.toml", cwd=tmp_path)
    assert r.returncode == 2 and "nope.toml" in r.stderr


@pytest.mark.parametrize("cmd", [[], ["run"], ["check"], ["tail"], ["admin"], ["top"]])
def test_help_on_every_command(tmp_path: Path, cmd: list[str]) -> None:
    r = aegis(*cmd, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "usage:" in r.stdout


def test_check_passes_on_embedded_defaults(tmp_path: Path) -> None:
    r = aegis("check", cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert "PASS  durable store" in r.stdout


def test_check_fails_when_the_durable_store_is_unreachable(tmp_path: Path) -> None:
    r = aegis(
        "check",
        cwd=tmp_path,
        AEGIS_POSTGRES_DSN="postgresql://postgres@127.0.0.1:1/none?connect_timeout=1",
    )
    assert r.returncode == 1
    assert "FAIL  durable store" in r.stdout
