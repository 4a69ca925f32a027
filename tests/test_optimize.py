"""`optimize`: the space file, workers sharing one study in real PostgreSQL (no trial run
twice, a killed worker's trial left FAILED), best.toml reproducing its trial, walk-forward
windows with no shared bar, the report."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import psycopg2
import pytest
from conftest import wait_until
from optuna.trial import TrialState
from test_backtest import T0, write_csv

from aegis_actors.backtest.api import BacktestConfig, run_backtest
from aegis_actors.optimize import walkforward
from aegis_actors.optimize.objective import Job
from aegis_actors.optimize.space import SpaceError, load_space, parse_space
from aegis_actors.optimize.study import Where, storage
from aegis_actors.strategies import params_file

ROOT = Path(__file__).resolve().parents[1]
SPACE = "fast = { low = 2, high = 8 }\nslow = { low = 10, high = 30 }\n"


def walk_rows(n: int = 300, seed: int = 7) -> list[list[str]]:
    """A seeded random walk with drift swings: SMA crosses both ways, different per param."""
    rnd, rows, close = random.Random(seed), [], 100.0
    for i in range(n):
        drift = 0.002 if (i // 50) % 2 == 0 else -0.002
        o = close * (1 + rnd.gauss(0, 0.001))
        c = o * (1 + drift + rnd.gauss(0, 0.006))
        hi, lo = max(o, c) * 1.001, min(o, c) * 0.999
        rows.append([str(T0 + 60 * i), f"{o:.4f}", f"{hi:.4f}", f"{lo:.4f}", f"{c:.4f}", "1000"])
        close = float(f"{c:.4f}")
    return rows


@pytest.fixture
def walk(aegis_env: Path) -> Path:
    (aegis_env / "space.toml").write_text(SPACE, encoding="utf-8")
    return write_csv(aegis_env / "walk.csv", walk_rows())


def optimize_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "aegis_actors", "optimize", "--data", str(data),
        "--symbol", "X", "--strategy", "sma_cross", "--space", str(data.parent / "space.toml"),
        "--exits", "signal", "--veto", "off", "--out", str(out), *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def trials_of(dsn: str, study: str = "aegis") -> list[optuna.trial.FrozenTrial]:
    st = storage(Where(dsn), heartbeat=False)
    return optuna.load_study(study_name=study, storage=st).get_trials(deepcopy=False)


# -- the space file ----------------------------------------------------------------------------


def test_space_kinds_and_bad_entries(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        "fast = { low = 5, high = 30 }\n"
        "threshold = { low = 0.001, high = 0.05, log = true }\n"
        "kind = { choices = [0, 1] }\n"
        "lookback = { low = 5, high = 30.0 }\n",
        encoding="utf-8",
    )
    fast, threshold, kind, lookback = load_space(f)
    assert fast.is_int and (fast.low, fast.high) == (5, 30)
    assert threshold.log and not threshold.is_int
    assert kind.choices == (0, 1)
    assert not lookback.is_int  # a float bound makes a float range
    study = optuna.create_study()
    trial = study.ask()
    assert isinstance(fast.suggest(trial), int)
    for bad, why in [
        ({"a": {"low": 3}}, "low and high"),
        ({"a": {"low": 9, "high": 3}}, "above high"),
        ({"a": {"low": 0, "high": 3, "log": True}}, "low > 0"),
        ({"a": {"choices": [[1], 2]}}, "numbers, strings or booleans"),
        ({"a": {"choices": ["x", "x"]}}, "listed twice"),
        ({"a": {"low": 1, "high": 3, "lo": 2}}, "unknown key lo"),
        ({}, "no parameters"),
    ]:
        with pytest.raises(SpaceError, match=why):
            parse_space(bad)


def test_bad_space_is_one_line_exit_2(walk: Path, aegis_env: Path) -> None:
    (aegis_env / "space.toml").write_text("fast = { low = 9, high = 3 }\n", encoding="utf-8")
    r = subprocess.run(
        optimize_cmd(walk, aegis_env / "o"), env=env(), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "space fast: low (9) is above high (3)"


# -- results -----------------------------------------------------------------------------------


def test_best_toml_reproduces_its_trial_and_report(walk: Path, aegis_env: Path) -> None:
    out = aegis_env / "o"
    r = subprocess.run(
        optimize_cmd(walk, out, "--trials", "6", "--seed", "3", "--param", "short=0"),
        env=env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    best = optuna.load_study(study_name="aegis", storage=f"sqlite:///{out / 'study.db'}")
    assert len(best.trials) == 6
    params = params_file(out / "best.toml")
    assert params == {"short": 0, **best.best_params}
    again = run_backtest(
        BacktestConfig(
            data=walk, symbol="X", strategy="sma_cross", params=params, exits="signal",
            veto=False, out=aegis_env / "again", html=False,
        )
    )  # fmt: skip
    assert again.metrics["sharpe"] == best.best_value  # exactly, not approximately
    page = (out / "optimize-report.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 3 and "<script" not in page and "http" not in page
    ran = [t for t in best.trials if "reused" not in t.user_attrs]
    assert len(list((out / "runs").iterdir())) == len(ran)  # one backtest per new param set
    for t in best.trials:
        if "reused" in t.user_attrs:  # a repeated param set copies its twin's result
            twin = best.trials[t.user_attrs["reused"]]
            assert (t.params, t.state) == (twin.params, twin.state)
            if t.state == TrialState.COMPLETE:
                assert t.value == twin.value


def test_min_trades_prunes_and_says_why(walk: Path, aegis_env: Path) -> None:
    out = aegis_env / "o"
    r = subprocess.run(
        optimize_cmd(walk, out, "--trials", "2", "--min-trades", "10000"),
        env=env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1  # nothing scored: no best.toml
    assert not (out / "best.toml").exists()
    trials = trials_of(f"sqlite:///{out / 'study.db'}")
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert all("< --min-trades 10000" in t.user_attrs["reason"] for t in trials)


# -- walk-forward ------------------------------------------------------------------------------


def test_walk_forward_windows_share_no_bar(walk: Path, aegis_env: Path) -> None:
    base = BacktestConfig(data=walk, symbol="X", strategy="sma_cross", exits="signal", veto=False)
    job = Job(base=base, space=tuple(load_space(aegis_env / "space.toml")), out=str(aegis_env))
    wins = walkforward.windows(walkforward.bar_times(job), 3)
    assert len(wins) == 3
    oos_seen: list[float] = []
    for w in wins:
        times = {}
        for part, j in (
            ("is", walkforward.in_sample(job, w)),
            ("oos", walkforward.out_of_sample(job, w)),
        ):
            r = run_backtest(
                replace(j.base, params={"fast": 3, "slow": 12}, out=aegis_env / part, html=False)
            )
            times[part] = [ts for ts, _ in r.equity]
        assert times["is"] and times["oos"]
        assert not set(times["is"]) & set(times["oos"])
        assert max(times["is"]) < min(times["oos"])  # out-of-sample follows in-sample
        oos_seen += times["oos"]
    assert len(oos_seen) == len(set(oos_seen))  # the stitched parts do not overlap either


def test_walk_forward_cli_table(walk: Path, aegis_env: Path) -> None:
    out = aegis_env / "o"
    r = subprocess.run(
        optimize_cmd(walk, out, "--trials", "3", "--walk-forward", "2", "--seed", "1"),
        env=env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "window 0:" in r.stdout and "window 1:" in r.stdout
    page = (out / "optimize-report.html").read_text(encoding="utf-8")
    assert "walk-forward" in page and "stitched out-of-sample equity" in page


# -- workers sharing one PostgreSQL study ------------------------------------------------------


def test_two_workers_share_a_postgres_study_no_trial_twice(
    walk: Path, aegis_env: Path, pg_dsn: str
) -> None:
    out = aegis_env / "o"
    cmd = optimize_cmd(walk, out, "--trials", "10", "--storage", pg_dsn, "--heartbeat", "1")
    procs = [
        subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    trials = [t for t in trials_of(pg_dsn) if not t.user_attrs.get("skipped")]
    assert len(trials) == 10
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    markers = sorted(p.name for p in (out / "runs").iterdir())
    ran = sorted(t.number for t in trials if "reused" not in t.user_attrs)
    assert markers == [f"aegis-{n:05d}" for n in ran]  # each trial's backtest ran once
    params = [tuple(sorted(t.params.items())) for t in trials if t.number in ran]
    assert len(params) == len(set(params))  # and no parameter set was paid for twice
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # both processes took trials
    with psycopg2.connect(pg_dsn) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM trials")
        assert cur.fetchone()[0] == len(trials_of(pg_dsn))


def test_worker_killed_mid_trial_leaves_it_failed(walk: Path, aegis_env: Path, pg_dsn: str) -> None:
    out = aegis_env / "o"
    cmd = optimize_cmd(walk, out, "--trials", "8", "--storage", pg_dsn, "--heartbeat", "1")
    victim = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def victim_running() -> optuna.trial.FrozenTrial | None:
        try:
            trials = trials_of(pg_dsn)
        except (KeyError, Exception):  # the study not created yet
            return None
        mine = [t for t in trials if t.state == TrialState.RUNNING and
                t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]  # fmt: skip
        return mine[0] if mine else None

    killed = wait_until(victim_running, timeout=90, what="the victim inside a trial")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    survivor = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=240)
    assert survivor.returncode == 0, survivor.stderr
    trials = {t.number: t for t in trials_of(pg_dsn) if not t.user_attrs.get("skipped")}
    assert len(trials) == 8
    assert trials[killed.number].state == TrialState.FAIL  # not lost, not re-run
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    markers = sorted(p.name for p in (out / "runs").iterdir())
    ran = sorted(t.number for t in trials.values() if "reused" not in t.user_attrs)
    assert markers == [f"aegis-{n:05d}" for n in ran]  # the killed trial's run counted once


def test_llm_budget_stops_new_trials(aegis_env: Path) -> None:
    """--roles llm against the local LLM server: once the study's summed token spend reaches
    the budget, no new trial starts; the trials skipped say why."""
    import json

    from llm_fake import FakeLlm
    from roles_harness import llm_roles
    from test_backtest import trend_rows

    fake = FakeLlm()
    try:
        lines = []
        for role, cfg in llm_roles(fake.url).items():
            lines.append(f"[roles.{role}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
        settings = aegis_env / "llm.toml"
        settings.write_text("\n".join(lines) + "\n", encoding="utf-8")
        data = write_csv(aegis_env / "bars.csv", trend_rows(30, 30))
        (aegis_env / "space.toml").write_text(
            "fast = { low = 2, high = 4 }\nslow = { low = 5, high = 9 }\n", encoding="utf-8"
        )
        out = aegis_env / "o"
        cmd = optimize_cmd(data, out, "--trials", "6", "--min-trades", "0", "--settings",
                           str(settings), "--roles", "llm", "--llm-budget-tokens", "1")  # fmt: skip
        cmd[cmd.index("--veto") + 1] = "on"  # verifier and commander on the LLM
        r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        trials = sorted(trials_of(f"sqlite:///{out / 'study.db'}"), key=lambda t: t.number)
        ran = [t for t in trials if "llm_tokens" in t.user_attrs]
        skipped = [t for t in trials if "LLM budget spent" in str(t.user_attrs.get("skipped"))]
        assert ran and skipped and len(ran) < 6
        assert sum(t.user_attrs["llm_tokens"] for t in ran[:-1]) < 1  # stopped on the first spend
        assert ran[-1].user_attrs["llm_tokens"] > 0 and len(fake.calls()) > 0
        assert all(t.number > ran[-1].number for t in skipped)
        assert "LLM spend:" in r.stdout
    finally:
        fake.close()


def test_local_workers_never_pay_for_one_param_set_twice(walk: Path, aegis_env: Path) -> None:
    """A one-point space and two local worker processes proposing it (at once, when both are
    up): the study holds its 4 trials, one backtest ran, the others reuse its result."""
    (aegis_env / "space.toml").write_text(
        "fast = { low = 3, high = 3 }\nslow = { low = 12, high = 12 }\n", encoding="utf-8"
    )
    out = aegis_env / "o"
    r = subprocess.run(
        optimize_cmd(walk, out, "--trials", "4", "--workers", "2"),
        env=env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    trials = [
        t for t in trials_of(f"sqlite:///{out / 'study.db'}") if not t.user_attrs.get("skipped")
    ]
    assert len(trials) == 4 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert len(list((out / "runs").iterdir())) == 1
    assert len({t.value for t in trials}) == 1


def test_unreachable_storage_is_one_line_without_the_password(walk: Path, aegis_env: Path) -> None:
    dsn = "postgresql://aegis:s3cret-pw@127.0.0.1:1/nope"  # port 1: nothing listens
    r = subprocess.run(
        optimize_cmd(walk, aegis_env / "o", "--storage", dsn),
        env=env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.startswith("--storage postgresql 127.0.0.1/nope: ")
    assert len(r.stderr.strip().splitlines()) == 1
    assert "s3cret-pw" not in r.stderr + r.stdout
