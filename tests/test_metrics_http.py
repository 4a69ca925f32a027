"""`/metrics` parses with prometheus-client's own parser and carries what operators graph;
`/api/status` is the admin `status` content; `top --once` renders it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from alerts_receivers import free_port
from conftest import drive
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent  # run this worktree's code


def test_metrics_parse_and_cover_the_pipeline(aegis_factory: Any, vclock: Any) -> None:
    port = free_port()
    aegis_factory(dashboard={"port": port}, feed={"symbols": ["AAPL", "MSFT"]})
    drive(vclock, 5)
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "aegis_stage_latency_ms",
        "aegis_events",
        "aegis_drops",
        "aegis_orders",
        "aegis_restarts",
        "aegis_trading_mode",
        "aegis_posture",
        "aegis_alerts",
        "aegis_alert_deliveries",
        "process_cpu_seconds",
        "aegis_accuracy_target_ratio",
        "aegis_accuracy_below_target",
    ):
        assert name in families, name
    lat = families["aegis_stage_latency_ms"]
    assert lat.type == "histogram"
    stages = {s.labels["stage"] for s in lat.samples if s.name.endswith("_count")}
    assert {"detect_to_analysis", "analysis", "verification", "cycle"} <= stages
    targets = {s.labels["kind"]: s.value for s in families["aegis_accuracy_target_ratio"].samples}
    assert targets == {"analysis": 0.65, "veto": 0.8, "execution": 0.995}
    events = sum(s.value for s in families["aegis_events"].samples if s.name.endswith("_total"))
    assert events > 0
    [mode] = families["aegis_trading_mode"].samples
    assert mode.value == 0.0  # normal
    [posture] = families["aegis_posture"].samples
    assert posture.value in (0.0, 1.0, 2.0)
    reasons = {s.labels["reason"] for s in families["aegis_drops"].samples}
    assert {"coalesced", "dead_letter"} <= reasons


def test_api_status_and_top(aegis_factory: Any, vclock: Any) -> None:
    port = free_port()
    app = aegis_factory(dashboard={"port": port}, feed={"symbols": ["AAPL"]})
    drive(vclock, 3)
    status = requests.get(f"http://127.0.0.1:{port}/api/status", timeout=5).json()
    direct = json.loads(json.dumps(app.status(), default=str))
    assert set(status) == set(direct)  # the same content as admin `status`
    for key in ("summary", "watchdog", "health", "pnl", "tree", "execution", "posture"):
        assert key in status
    assert status["summary"]["mode"] == "normal"
    assert {"cpu_pct", "memory_pct", "net_sent_bytes"} <= set(status["health"])
    assert status["watchdog"]["sla"]["cycle"]["critical_ms"] == 10000
    kinds = {t["kind"]: t for t in status["watchdog"]["accuracy"]["targets"]}
    assert set(kinds) == {"analysis", "veto", "execution"}
    assert kinds["analysis"]["target"] == 0.65 and status["summary"]["below_target"] == []
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aegis_actors",
            "top",
            "--once",
            "--url",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert out.returncode == 0, out.stderr
    assert "mode normal" in out.stdout and "latency" in out.stdout and "analyst" in out.stdout
    assert "(target 65.0%)" in out.stdout  # each SPEC 5.3 rate beside its target
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "aegis_actors",
            "top",
            "--once",
            "--url",
            f"http://127.0.0.1:{free_port()}/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert bad.returncode == 1 and "cannot reach" in bad.stdout


def test_a_message_to_nobody_is_one_dead_letter(aegis_factory: Any, vclock: Any) -> None:
    """Each message that reaches no live actor is counted once, sent alone or in a batch
    (the Directory's hook counts it; the sending actor does not count it again)."""
    from aegis_actors.messages import Posture, SetPosture
    from aegis_actors.runtime import POSTURE

    app = aegis_factory(feed={"symbols": ["AAPL"]})
    ref = app.rt.directory.get(POSTURE)
    msg = SetPosture(posture=Posture.DEFENSIVE, reason="test")
    for _ in range(3):
        ref.proxy().send("nobody", msg).get(timeout=5)
    drive(vclock, 1)
    assert app.rt.metrics.value("aegis_dead_letters_total", {"actor": "nobody"}) == 3
