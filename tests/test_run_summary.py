"""How a run ends, as a user sees it on stderr: a short summary of what happened, and
exactly one log line for each order a check refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_ends_with_a_summary_and_logs_each_refusal_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        AEGIS_DASHBOARD__PORT="0",
        AEGIS_FEED__TICK_INTERVAL_S="0.05",
        # one position at a time: the second entry is refused by the max_positions check
        AEGIS_POSTURE__OFFENSIVE__MAX_POSITIONS="1",
        AEGIS_POSTURE__GUERRILLA__MAX_POSITIONS="1",
        AEGIS_POSTURE__DEFENSIVE__MAX_POSITIONS="1",
    )
    r = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "--for", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert "stopped cleanly" in lines[-1]
    summary = [ln for ln in lines if "run summary:" in ln]
    assert len(summary) == 3, summary
    text = "\n".join(summary)
    for word in ("events", "orders", "fills", "realised P&L", "open positions", "alerts"):
        assert word in text, word
    assert "at exit mode normal, posture " in text
    assert "refused by checks (max_positions" in text

    log = [json.loads(x) for x in (tmp_path / "logs" / "aegis.jsonl").read_text().splitlines()]
    refusals = Counter(
        d["event_id"]
        for d in log
        if d["actor"] == "execution" and d.get("event_id") and "refused" in d["msg"]
    )
    assert refusals, "no order was refused"
    assert set(refusals.values()) == {1}, refusals.most_common(3)
    first = next(iter(refusals))
    [line] = [d["msg"] for d in log if d.get("event_id") == first and d["actor"] == "execution"]
    assert "refused by max_positions check" in line
