"""`tail --event ID` prints that event's path across actors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import drive
from loguru import logger

ROOT = Path(__file__).resolve().parent.parent  # run this worktree's code


def test_tail_event_prints_the_path_across_actors(
    aegis_factory: Any, aegis_env: Path, vclock: Any
) -> None:
    # the per-stage lines are trace lines: written when the JSON log is at DEBUG
    run = {"log_dir": str(aegis_env / "logs"), "json_log_level": "DEBUG"}
    app = aegis_factory(feed={"symbols": ["AAPL", "MSFT"]}, run=run)
    drive(vclock, 8)
    app.stop("test over")
    logger.complete()
    log = Path(app.settings.run.log_dir) / "aegis.jsonl"
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    ordered = [d for d in lines if d["actor"] == "execution" and d.get("event_id")]
    assert ordered, "no order in 8 virtual seconds"
    event_id = ordered[0]["event_id"]
    actors_in_log = {d["actor"] for d in lines if d.get("event_id") == event_id}
    assert len(actors_in_log) >= 3
    out = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "tail", "--event", event_id, "--file", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    shown = out.stdout.splitlines()
    body, summary = shown[:-1], shown[-1]
    assert body and all(f"[{event_id}]" in ln for ln in body)
    for actor in actors_in_log:
        assert any(f" {actor} " in ln for ln in body), actor
    assert summary.startswith(f"event {event_id}: {len(body)} lines")
    assert "path market -> " in summary and "execution" in summary
    assert any(d["level"] == "DEBUG" for d in lines)

    other = subprocess.run(
        [sys.executable, "-m", "aegis_actors", "tail", "--event", "ev-none", "--file", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert other.returncode == 1 and "no lines" in other.stdout


def test_json_log_at_info_writes_no_per_event_line(aegis_factory: Any, vclock: Any) -> None:
    """By default (JSON sink at INFO) the event path writes no DEBUG line per stage."""
    app = aegis_factory(feed={"symbols": ["AAPL", "MSFT"]})
    drive(vclock, 8)
    app.stop("test over")
    logger.complete()
    log = Path(app.settings.run.log_dir) / "aegis.jsonl"
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    assert lines and not any(d["level"] == "DEBUG" for d in lines)
    assert any(d["actor"] == "execution" and d.get("event_id") for d in lines)  # orders
