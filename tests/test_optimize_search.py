"""`optimize` beyond one number: the median pruner fed from the backtest's equity path,
NSGA-II with a Pareto front and a documented pick, string/bool choices through to the
strategy and best.toml, and LLM answers shared by workers in real PostgreSQL / Redis."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_backtest import write_csv
from test_optimize import env, optimize_cmd, trials_of, walk_rows

from aegis_actors.backtest.api import BacktestConfig, run_backtest
from aegis_actors.optimize.objective import CHECKPOINTS, REPORTED
from aegis_actors.strategies import params_file

SPACE = "fast = { low = 2, high = 8 }\nslow = { low = 10, high = 30 }\n"


@pytest.fixture
def walk(aegis_env: Path) -> Path:
    (aegis_env / "space.toml").write_text(SPACE, encoding="utf-8")
    return write_csv(aegis_env / "walk.csv", walk_rows())


def run(
    cmd: list[str], timeout: float = 240, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout, cwd=cwd)


def sqlite(out: Path) -> str:
    return f"sqlite:///{out / 'study.db'}"


# -- the checkpoint hook ------------------------------------------------------------------------


def test_checkpoint_hook_sees_the_path_and_can_stop_the_replay(walk: Path, aegis_env: Path) -> None:
    base = BacktestConfig(
        data=walk, symbol="X", strategy="sma_cross", params={"fast": 3, "slow": 12},
        exits="signal", veto=False, html=False,
    )  # fmt: skip
    plain = run_backtest(base)
    seen: list[tuple[int, int, float]] = []

    def watch(step: int, equity: list[tuple[float, float]]) -> bool:
        seen.append((step, len(equity), equity[-1][1]))
        return False

    from dataclasses import replace

    watched = run_backtest(replace(base, on_checkpoint=watch, checkpoints=CHECKPOINTS))
    n = len(plain.equity)
    assert [s for s, _, _ in seen] == list(range(1, CHECKPOINTS + 1))
    assert [k for _, k, _ in seen] == [i * n // (CHECKPOINTS + 1) for i in range(1, 10)]
    assert [e for _, k, e in seen] == [plain.equity[k - 1][1] for _, k, _ in seen]
    assert watched.metrics == plain.metrics  # a hook that never stops changes nothing
    stopped = run_backtest(
        replace(base, on_checkpoint=lambda step, eq: step == 3, checkpoints=CHECKPOINTS)
    )
    assert stopped.equity == plain.equity[: seen[2][1]]  # ended at the third checkpoint


# -- the median pruner --------------------------------------------------------------------------


def test_median_pruner_stops_poor_trials_and_they_count(walk: Path, aegis_env: Path) -> None:
    out = aegis_env / "o"
    r = run(optimize_cmd(walk, out, "--trials", "16", "--seed", "5", "--min-trades", "0"))
    assert r.returncode == 0, r.stderr
    trials = [t for t in trials_of(sqlite(out)) if not t.user_attrs.get("skipped")]
    assert len(trials) == 16  # pruned trials are finished trials of the study's total
    by_pruner = [t for t in trials if "median pruner" in str(t.user_attrs.get("reason"))]
    assert by_pruner, [t.user_attrs for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for t in by_pruner:
        assert t.state == TrialState.PRUNED
        if "reused" in t.user_attrs:
            continue
        step = t.user_attrs["pruned_at"]
        assert step in REPORTED  # 30%, 50%, 70%, 90%: never in the warm-up
        assert max(t.intermediate_values) == step  # its replay stopped there
        earlier = [  # one worker: the complete trials before it are what the pruner saw
            c.intermediate_values[step]
            for c in complete
            if c.number < t.number and step in c.intermediate_values
        ]
        assert len(earlier) >= 3
        # judged by its value at that checkpoint, not its best so far (study.AtCheckpoint)
        assert t.intermediate_values[step] < statistics.median(earlier)
    for t in complete:
        if "reused" not in t.user_attrs:
            assert t.intermediate_values and set(t.intermediate_values) <= set(REPORTED)
    assert "median (objective on the equity path" in (out / "optimize-report.html").read_text()
    assert optuna.load_study(study_name="aegis", storage=sqlite(out)).best_trial.state == (
        TrialState.COMPLETE
    )


def test_pruner_none_and_profit_factor_report_no_intermediate_values(
    walk: Path, aegis_env: Path
) -> None:
    for i, extra in enumerate(
        (["--pruner", "none"], ["--objective", "profit_factor"]),
    ):
        out = aegis_env / f"o{i}"
        r = run(optimize_cmd(walk, out, "--trials", "7", "--seed", "5", *extra))
        assert r.returncode in (0, 1), r.stderr
        trials = trials_of(sqlite(out))
        assert not any(t.intermediate_values for t in trials)
        assert not any("median" in str(t.user_attrs.get("reason")) for t in trials)


# -- NSGA-II ------------------------------------------------------------------------------------


def test_two_objectives_make_a_pareto_front_and_best_toml_names_its_pick(
    walk: Path, aegis_env: Path
) -> None:
    out = aegis_env / "o"
    r = run(optimize_cmd(walk, out, "--trials", "12", "--seed", "2", "--objective",
                         "sharpe,return", "--min-trades", "0"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name="aegis", storage=sqlite(out))
    assert len(study.directions) == 2
    assert not any(t.intermediate_values for t in study.trials)  # no pruner: several objectives
    front = {t.number: t for t in study.best_trials}
    assert front and "Pareto front:" in r.stdout
    text = (out / "best.toml").read_text(encoding="utf-8")
    number = int(text.split("trial ", 1)[1].split(",", 1)[0])
    assert number in front
    assert "by --pick balanced" in text and "(reproduced)" in r.stdout
    chosen = front[number]
    assert params_file(out / "best.toml") == chosen.params
    again = run_backtest(
        BacktestConfig(
            data=walk, symbol="X", strategy="sma_cross", params=chosen.params, exits="signal",
            veto=False, html=False,
        )
    )  # fmt: skip
    assert [again.metrics["sharpe"], again.metrics["return_pct"]] == chosen.values
    lows = [min(t.values[i] for t in front.values()) for i in (0, 1)]
    highs = [max(t.values[i] for t in front.values()) for i in (0, 1)]

    def worst(t: optuna.trial.FrozenTrial) -> float:
        return min(
            (v - lo) / (hi - lo) if hi > lo else 1.0
            for v, lo, hi in zip(t.values, lows, highs, strict=True)
        )

    assert worst(chosen) == max(worst(t) for t in front.values())
    page = (out / "optimize-report.html").read_text(encoding="utf-8")
    assert "Pareto front" in page and "(chosen)" in page and "NSGA-II" in page
    # --pick return: the front's best return, from the same (joined) study
    r = run(optimize_cmd(walk, out, "--trials", "12", "--objective", "sharpe",
                         "--objective", "return", "--pick", "return"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    text = (out / "best.toml").read_text(encoding="utf-8")
    number = int(text.split("trial ", 1)[1].split(",", 1)[0])
    assert front[number].values[1] == max(t.values[1] for t in front.values())


def test_bad_objective_or_pick_is_one_line(walk: Path, aegis_env: Path) -> None:
    for extra, why in (
        (["--objective", "sharpe,gain"], "--objective gain: use one of"),
        (["--objective", "sharpe,return", "--pick", "calmar"], "--pick calmar: use balanced"),
    ):
        r = run(optimize_cmd(walk, aegis_env / "o", *extra), timeout=60)
        assert r.returncode == 2 and r.stderr.strip().startswith(why), r.stderr


# -- string and boolean choices -----------------------------------------------------------------

STRATEGY = '''
from aegis_actors.strategies.builtin import SmaCross


class Styled:
    """sma_cross with a string `style` and a boolean `flip` (refuses anything else)."""

    name = "styled"

    def __init__(self, fast=3, slow=12, style="fast", flip=False):
        if not isinstance(style, str) or not isinstance(flip, bool):
            raise ValueError(f"style must be a string and flip a bool: {style!r} {flip!r}")
        self.inner = SmaCross(fast if style == "fast" else fast + 2, slow, short=0)
        self.flip = flip

    def signals(self, closes):
        return [-s if self.flip else s for s in self.inner.signals(closes)]
'''


def test_string_and_bool_choices_reach_the_strategy_and_best_toml(
    walk: Path, aegis_env: Path
) -> None:
    (aegis_env / "styled.py").write_text(STRATEGY, encoding="utf-8")
    (aegis_env / "space.toml").write_text(
        'style = { choices = ["fast", "slow \\"quoted\\""] }\nflip = { choices = [true, false] }\n'
        "fast = { low = 2, high = 5 }\n",
        encoding="utf-8",
    )
    out = aegis_env / "o"
    cmd = optimize_cmd(walk, out, "--trials", "8", "--seed", "1", "--min-trades", "0")
    cmd[cmd.index("sma_cross")] = f"{aegis_env / 'styled.py'}:Styled"
    r = run(cmd)
    assert r.returncode == 0, r.stderr
    trials = trials_of(sqlite(out))
    assert not [t for t in trials if t.state == TrialState.FAIL]  # never a number for a string
    assert {type(t.params["style"]) for t in trials} == {str}
    assert {type(t.params["flip"]) for t in trials} == {bool}
    best = optuna.load_study(study_name="aegis", storage=sqlite(out)).best_trial
    params = params_file(out / "best.toml")
    assert params == best.params and isinstance(params["flip"], bool)
    assert "(reproduced)" in r.stdout
    flags = (out / "best.toml").read_text(encoding="utf-8").splitlines()[1].split("backtest ")[1]
    bt = run(  # the header's command, run where best.toml is
        [*optimize_cmd(walk, out)[:3], "backtest", *flags.replace("'", "").split(),
         "--out", str(aegis_env / "bt")], cwd=out,
    )  # fmt: skip
    assert bt.returncode == 0, bt.stderr
    report = json.loads((aegis_env / "bt" / "report.json").read_text(encoding="utf-8"))
    assert report["sharpe"] == best.value
    assert report["strategy"]["params"]["style"] == best.params["style"]
