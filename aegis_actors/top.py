"""`python -m aegis_actors top`: a live terminal view of a running process, read from its
dashboard's `/api/status` (so it works against any process, wherever its actors are)."""

from __future__ import annotations

import time
from typing import Any

import requests
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.tree import Tree


def fetch(url: str, timeout: float = 3.0) -> dict[str, Any]:
    r = requests.get(url.rstrip("/") + "/api/status", timeout=timeout)
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def _n(v: Any, d: int = 2) -> str:
    return f"{v:,.{d}f}" if isinstance(v, int | float) else "-"


def _pct(v: Any) -> str:
    return f"{v * 100:.1f}%" if isinstance(v, int | float) else "-"


TARGET_LABELS = (("execution", "orders ok"), ("analysis", "analysis"), ("veto", "veto hits"))


def _target(acc: dict[str, Any], kind: str, label: str) -> str:
    """A SPEC 5.3 rate with its target: red when below, dim when too few samples."""
    t = next((t for t in acc.get("targets", []) or [] if t.get("kind") == kind), None)
    if t is None:
        key = {"execution": "execution_success", "analysis": "analysis_accuracy"}
        return f"{label} {_pct(acc.get(key.get(kind, 'veto_hit_rate')))}"
    shown = f"{label} {_pct(t.get('value'))} (target {_pct(t.get('target'))})"
    if t.get("status") == "below":
        return f"[bold red]{shown} BELOW[/]"
    if t.get("status") == "too_few":
        return f"[dim]{shown} n={t.get('samples')}[/]"
    return shown


def _tree(node: dict[str, Any], into: Tree | None = None) -> Tree:
    restarts = node.get("restarts", node.get("restarted", 0))
    label = f"{node.get('name')} [{node.get('state')}] restarts {restarts}"
    t = Tree(label) if into is None else into.add(label)
    for child in node.get("children", []) or []:
        _tree(child, t)
    return t


def render(s: dict[str, Any]) -> Group:
    """One frame: what an operator checks first, then latency, positions, alerts, tree."""
    sum_, w, h = s.get("summary", {}), s.get("watchdog", {}), s.get("health", {})
    acc = w.get("accuracy", {}) or {}
    head = (
        f"mode [bold]{sum_.get('mode')}[/] · posture [bold]{sum_.get('posture')}[/] · "
        f"equity {_n(sum_.get('equity'))} · PnL {_n(sum_.get('pnl'))} · "
        f"CPU {_n(h.get('cpu_pct'), 1)}% (this process {_n(h.get('process_cpu_pct'), 1)}% "
        f"of a core) · mem {_n(h.get('memory_pct'), 1)}% · "
        + " · ".join(_target(acc, k, label) for k, label in TARGET_LABELS)
    )
    lat = Table("stage", "n", "p50 ms", "p95 ms", "p99 ms", "critical", title="latency")
    sla = w.get("sla", {}) or {}
    for stage, v in (w.get("latency", {}) or {}).items():
        crit = (sla.get(stage) or {}).get("critical_ms")
        lat.add_row(
            stage,
            str(v["count"]),
            _n(v["p50_ms"], 1),
            _n(v["p95_ms"], 1),
            _n(v["p99_ms"], 1),
            _n(crit, 0),
        )
    pos = Table("symbol", "qty", "avg", "last", "PnL", title="positions")
    for sym, p in ((s.get("pnl") or {}).get("positions") or {}).items():
        pos.add_row(
            sym, _n(p.get("qty"), 0), _n(p.get("avg_price")), _n(p.get("price")), _n(p.get("pnl"))
        )
    al = Table("level", "kind", "message", title="recent alerts")
    for a in list(reversed(w.get("alerts", []) or []))[:8]:
        al.add_row(str(a.get("level")), str(a.get("kind")), str(a.get("message"))[:90])
    parts: list[Any] = [Panel(head, title=f"AEGIS run {s.get('run_id')}"), lat, pos, al]
    if isinstance(s.get("tree"), dict) and s["tree"].get("name"):
        parts.append(_tree(s["tree"]))
    return Group(*parts)


def run(url: str, every_s: float = 2.0, once: bool = False, console: Console | None = None) -> int:
    console = console or Console()
    if once:
        try:
            console.print(render(fetch(url)))
        except requests.RequestException as exc:
            console.print(f"cannot reach {url}: {type(exc).__name__}")
            return 1
        return 0
    with Live(console=console, refresh_per_second=4, screen=False) as live:
        while True:
            try:
                live.update(render(fetch(url)))
            except requests.RequestException as exc:
                live.update(Panel(f"cannot reach {url}: {type(exc).__name__}; retrying"))
            time.sleep(every_s)
