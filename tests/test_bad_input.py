"""Every bad input gets one clear line (a real subprocess, its exit code and exact stderr),
and no secret set in the environment ever reaches stderr or logs/.

`BAD_INPUTS` is the table the closing note counts: (what, argv, environment, settings
file, expected exit code, expected stderr line).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def secret(tag: str) -> str:
    return f"{tag}-SECRET-{uuid.uuid4().hex[:12]}"


# Every secret variable the architecture documents, each with its own value.
SECRETS = {
    "AEGIS_ADMIN_SECRET": secret("admin"),
    "AEGIS_FEED__KEY": secret("feedkey"),
    "AEGIS_FEED__SECRET": secret("feedsecret"),
    "AEGIS_BROKER__KEY_ID": secret("brokerkey"),
    "AEGIS_BROKER__SECRET_KEY": secret("brokersecret"),
    "AEGIS_ROLES__ANALYST__API_KEY": secret("analyst"),
    "AEGIS_ROLES__VERIFIER__API_KEY": secret("verifier"),
    "AEGIS_ROLES__COMMANDER__API_KEY": secret("commander"),
    "AEGIS_ALERTS__SLACK_URL": "http://127.0.0.1:9/hooks/" + secret("slack"),
    "AEGIS_ALERTS__SMTP_PASSWORD": secret("smtp"),
    "AEGIS_ALERTS__WEBHOOK_TOKEN": secret("webhook"),
    "DEEPSEEK_API_KEY": secret("deepseek"),
    "ANTHROPIC_API_KEY": secret("anthropic"),
}


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    e.update(PYTHONPATH=str(ROOT), AEGIS_DASHBOARD__PORT="0", **SECRETS)
    for name in extra:  # a whole section as JSON: its secrets are the test's, not SECRETS'
        for key in [k for k in e if k.startswith(name + "__")]:
            del e[key]
    e.update(extra)
    return e


def aegis(
    *argv: str, cwd: Path, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "aegis_actors", *argv],
        cwd=cwd,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def leaked(*texts: str, root: Path | None = None, values: dict[str, str] = SECRETS) -> list[str]:
    """The secret variables whose value appears in `texts` or any file under root/logs."""
    blobs = list(texts)
    if root is not None and (root / "logs").exists():
        blobs += [p.read_text(errors="replace") for p in (root / "logs").rglob("*") if p.is_file()]
    return sorted(name for name, value in values.items() for b in blobs if value in b)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return lines[0]


# (id, argv, extra environment, settings file text or None, exit code, the stderr line)
BAD_INPUTS: list[tuple[str, list[str], dict[str, str], str | None, int, str]] = [
    (
        "env-typo-section",
        ["run", "--for", "1"],
        {"AEGIS_BROKR__CAPITAL": "5000"},
        None,
        2,
        "settings: unknown key brokr.capital (environment variable AEGIS_BROKR__CAPITAL); "
        "did you mean AEGIS_BROKER__CAPITAL?",
    ),
    (
        "env-single-underscore",
        ["run", "--for", "1"],
        {"AEGIS_BROKER_CAPITAL": "5000"},
        None,
        2,
        "settings: unknown key broker_capital (environment variable AEGIS_BROKER_CAPITAL); "
        "did you mean AEGIS_BROKER__CAPITAL?",
    ),
    (
        "env-bad-json-list",
        ["check"],
        {"AEGIS_FEED__SYMBOLS": "[AAPL"},
        None,
        2,
        "settings: AEGIS_FEED__SYMBOLS: not valid JSON "
        "(expected a JSON list or a comma-separated list)",
    ),
    (
        "env-bad-json-list-tail",
        ["tail"],
        {"AEGIS_FEED__SYMBOLS": "[AAPL"},
        None,
        2,
        "settings: AEGIS_FEED__SYMBOLS: not valid JSON "
        "(expected a JSON list or a comma-separated list)",
    ),
    (
        "empty-symbol",
        ["run", "--for", "1"],
        {},
        '[feed]\nsymbols = [""]\n',
        2,
        "settings: feed.symbols: an empty symbol is not a symbol (got [''])",
    ),
    (
        "duplicate-symbols",
        ["run", "--for", "1"],
        {"AEGIS_FEED__SYMBOLS": "AAPL,MSFT,AAPL"},
        None,
        2,
        "settings: feed.symbols: duplicate symbol(s) ['AAPL'] (got ['AAPL', 'MSFT', 'AAPL'])",
    ),
    (
        "alpaca-feed-no-keys",
        ["run", "--for", "1"],
        {
            "AEGIS_FEED__KIND": "alpaca",
            "AEGIS_FEED__URL": "ws://127.0.0.1:9",
            "AEGIS_FEED__KEY": "",
        },
        None,
        2,
        "settings: feed.kind 'alpaca' needs its key and secret: set AEGIS_FEED__KEY and "
        "AEGIS_FEED__SECRET",
    ),
    (
        "alpaca-broker-no-keys",
        ["run", "--for", "1"],
        {
            "AEGIS_BROKER__KIND": "alpaca",
            "AEGIS_BROKER__URL": "http://127.0.0.1:9",
            "AEGIS_BROKER__SECRET_KEY": "",
        },
        None,
        2,
        "settings: broker.kind 'alpaca' needs its keys: set AEGIS_BROKER__KEY_ID and "
        "AEGIS_BROKER__SECRET_KEY",
    ),
    (
        "api-key-in-file",
        ["run", "--for", "1"],
        {},
        '[roles.analyst]\napi_key = "sk-FILE-SECRET-1"\n',
        2,
        "settings: roles.analyst.api_key in s.toml: secrets come only from the environment; "
        "remove it from the file and set AEGIS_ROLES__ANALYST__API_KEY",
    ),
    (
        "smtp-password-in-file",
        ["check"],
        {},
        '[alerts]\nsmtp_password = "FILE-SECRET-2"\n',
        2,
        "settings: alerts.smtp_password in s.toml: secrets come only from the environment; "
        "remove it from the file and set AEGIS_ALERTS__SMTP_PASSWORD",
    ),
    (
        "secret-bad-type-not-printed",
        ["run", "--for", "1"],
        {"AEGIS_ALERTS": '{"smtp_password": 12345}'},
        None,
        2,
        "settings: alerts.smtp_password: Input should be a valid string",
    ),
    (
        "bad-section-json-not-printed",
        ["run", "--for", "1"],
        {"AEGIS_FEED": '{"key": "JSON-SECRET-3", "safe_after_s": 50}'},
        None,
        2,
        "settings: feed: stale_after_s < safe_after_s < shutdown_after_s must hold",
    ),
    (
        "non-ascii-secret",
        ["run", "--for", "1"],
        {"AEGIS_ALERTS__WEBHOOK_TOKEN": "tök-SECRET-4"},
        None,
        2,
        "settings: alerts.webhook_token (AEGIS_ALERTS__WEBHOOK_TOKEN): contains non-ASCII or "
        "control characters; a secret must be printable ASCII",
    ),
    (
        "for-negative",
        ["run", "--for", "-1"],
        {},
        None,
        2,
        "python -m aegis_actors run: argument --for: '-1': must be a finite number of "
        "seconds > 0 (see --help)",
    ),
    (
        "for-nan",
        ["--for", "nan"],
        {},
        None,
        2,
        "python -m aegis_actors: argument --for: 'nan': must be a finite number of "
        "seconds > 0 (see --help)",
    ),
    (
        "for-inf",
        ["run", "--for", "inf"],
        {},
        None,
        2,
        "python -m aegis_actors run: argument --for: 'inf': must be a finite number of "
        "seconds > 0 (see --help)",
    ),
    (
        "sqlite-path-unwritable",
        ["run", "--for", "1"],
        {"AEGIS_STORE__SQLITE_PATH": "afile/aegis.db"},
        None,
        2,
        "settings: store.sqlite_path: cannot write afile/aegis.db (afile is not a directory)",
    ),
    (
        "backtest-out-is-a-file",
        ["backtest", "--data", "bars.csv", "--out", "afile"],
        {},
        None,
        2,
        "backtest: --out afile: exists and is not a directory",
    ),
]


@pytest.mark.parametrize(
    ("argv", "extra", "toml", "code", "line"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS],
)
def test_bad_input_gets_one_line_and_no_secret(
    tmp_path: Path, argv: list[str], extra: dict[str, str], toml: str | None, code: int, line: str
) -> None:
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "bars.csv").write_text("ts,open,high,low,close,volume\n1,1,1,1,1,1\n")
    if toml is not None:
        (tmp_path / "s.toml").write_text(toml)
        argv = [*argv, "--settings", "s.toml"]
    r = aegis(*argv, cwd=tmp_path, timeout=30, **extra)
    assert r.returncode == code, r.stderr[-3000:]
    assert one_line(r) == line
    planted = {**SECRETS, "file": "FILE-SECRET", "json": "JSON-SECRET", "token": "SECRET-4"}
    assert leaked(r.stdout, r.stderr, root=tmp_path, values=planted) == []


def test_comma_separated_symbols_are_a_list(tmp_path: Path) -> None:
    r = aegis("check", cwd=tmp_path, AEGIS_FEED__SYMBOLS="AAPL")
    assert r.returncode == 0, r.stderr
    r = aegis("run", "--for", "2", cwd=tmp_path, AEGIS_FEED__SYMBOLS="AAPL, MSFT")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_a_run_with_every_secret_set_leaks_none(tmp_path: Path) -> None:
    """All documented secret variables set, a 3 s run: none in stderr, stdout or logs/."""
    r = aegis("run", "--for", "3", cwd=tmp_path, AEGIS_FEED__TICK_INTERVAL_S="0.05")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "logs" / "aegis.jsonl").stat().st_size > 0
    assert leaked(r.stdout, r.stderr, root=tmp_path) == []
    c = aegis("check", cwd=tmp_path)
    assert leaked(c.stdout, c.stderr) == []


# -- pipes and Ctrl-C ---------------------------------------------------------------------


def log_file(path: Path, n: int = 5000) -> Path:
    line = '{"ts":"2026-01-01T00:00:00.000","level":"INFO","actor":"x","msg":"m"}\n'
    path.write_text(line * n)
    return path


def shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tail_into_head_ends_quietly(tmp_path: Path) -> None:
    log_file(tmp_path / "a.jsonl")
    r = shell(f"{PY} -m aegis_actors tail --file a.jsonl | head -1", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and len(r.stdout.splitlines()) == 1


def test_backtest_into_head_ends_quietly(tmp_path: Path) -> None:
    rows = [
        f"{1_767_000_000 + 60 * i},{100 + i % 7},{101 + i % 7},{99 + i % 7},{100 + i % 7},1000"
        for i in range(120)
    ]
    (tmp_path / "bars.csv").write_text("ts,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    r = shell(f"{PY} -m aegis_actors backtest --data bars.csv --out res | head -2", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and len(r.stdout.splitlines()) == 2


def test_tail_follow_stops_on_ctrl_c_quietly(tmp_path: Path) -> None:
    log_file(tmp_path / "a.jsonl", 3)
    p = subprocess.Popen(
        [PY, "-m", "aegis_actors", "tail", "-f", "--file", "a.jsonl"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    for _ in range(3):  # it is following once it printed what was there
        assert p.stdout.readline()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=15)
    assert p.returncode == 0 and err == ""


# -- a busy dashboard port ----------------------------------------------------------------


def test_busy_dashboard_port_is_one_line_and_the_run_goes_on(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        r = aegis("run", "--for", "4", cwd=tmp_path, AEGIS_DASHBOARD__PORT=str(port))
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.monotonic() - t0 >= 4
    assert "Traceback" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if "dashboard" in x]
    assert len(errors) == 1, r.stderr[-3000:]
    assert errors[0].endswith(
        f"dashboard not started: port {port} in use; set dashboard.port or 0 (running without it)"
    )
    assert "stopped cleanly" in r.stderr.strip().splitlines()[-1]


def count_bad_inputs() -> dict[str, Any]:
    """For the closing note: how many bad inputs this file tries, by exit code."""
    by_code: dict[int, int] = {}
    for case in BAD_INPUTS:
        by_code[case[4]] = by_code.get(case[4], 0) + 1
    return {"cases": len(BAD_INPUTS), "by_exit_code": by_code}
