"""optimize-report.html: one self-contained page, inline SVG, no script or network."""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

W, H, PAD = 720, 220, 36
COLOURS = {"COMPLETE": "#2563eb", "PRUNED": "#9ca3af", "FAIL": "#dc2626"}


def importance(study: optuna.Study) -> tuple[dict[str, float], str]:
    """Optuna's fANOVA importance; with too few trials, |correlation| of each param with the
    objective (normalised) and a note saying so."""
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None]
    if len(done) < 2:
        return {}, "too few completed trials for parameter importance"
    try:
        return dict(optuna.importance.get_param_importances(study)), "fANOVA (optuna.importance)"
    except Exception:  # optuna refuses e.g. a single distinct value: fall back
        pass
    ys = [float(t.value) for t in done if t.value is not None]
    scores: dict[str, float] = {}
    for name in {k for t in done for k in t.params}:
        pairs = [
            (float(t.params[name]), y) for t, y in zip(done, ys, strict=True) if name in t.params
        ]
        scores[name] = abs(_corr(pairs))
    total = sum(scores.values()) or 1.0
    return {k: v / total for k, v in scores.items()}, "|correlation| fallback (few trials)"


def _corr(pairs: list[tuple[float, float]]) -> float:
    n = len(pairs)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in pairs) / n
    my = sum(p[1] for p in pairs) / n
    sxy = sum((x - mx) * (y - my) for x, y in pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    syy = sum((y - my) ** 2 for _, y in pairs)
    return 0.0 if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def _scale(vals: list[float], lo_px: float, hi_px: float) -> Any:
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return lambda v: lo_px + (v - lo) / span * (hi_px - lo_px)


def svg_line(points: list[tuple[float, float]], title: str) -> str:
    if len(points) < 2:
        return f"<p>{html.escape(title)}: no data</p>"
    sx = _scale([p[0] for p in points], PAD, W - 8)
    sy = _scale([p[1] for p in points], H - PAD, 8)
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    lo, hi = min(p[1] for p in points), max(p[1] for p in points)
    return (
        f'<svg width="{W}" height="{H}" role="img" aria-label="{html.escape(title)}">'
        f'<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="{path}"/>'
        f'<text x="2" y="14" font-size="11">{hi:,.2f}</text>'
        f'<text x="2" y="{H - PAD}" font-size="11">{lo:,.2f}</text></svg>'
    )


def svg_trials(trials: list[FrozenTrial]) -> str:
    scored = [t for t in trials if t.value is not None]
    if not scored:
        return "<p>no trial scored</p>"
    xs = [float(t.number) for t in trials]
    sx = _scale(xs, PAD, W - 8)
    sy = _scale([float(t.value) for t in scored if t.value is not None], H - PAD, 8)
    dots, best, line = [], -math.inf, []
    for t in sorted(trials, key=lambda t: t.number):
        colour = COLOURS.get(t.state.name, "#000")
        if t.value is not None:
            best = max(best, t.value)
            line.append(f"{sx(t.number):.1f},{sy(best):.1f}")
            y = sy(t.value)
        else:
            y = H - PAD + 12  # pruned / failed: a mark under the axis
        dots.append(
            f'<circle cx="{sx(t.number):.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
            f"<title>trial {t.number} {t.state.name} {t.value if t.value is not None else ''} "
            f"{html.escape(str(t.params))}</title></circle>"
        )
    return (
        f'<svg width="{W}" height="{H + 16}" role="img" aria-label="objective per trial">'
        f'<polyline fill="none" stroke="#16a34a" points="{" ".join(line)}"/>{"".join(dots)}</svg>'
    )


def svg_bars(values: dict[str, float]) -> str:
    if not values:
        return ""
    rows = sorted(values.items(), key=lambda kv: -kv[1])
    top = max(v for _, v in rows) or 1.0
    h = 22 * len(rows) + 4
    bars = "".join(
        f'<text x="0" y="{22 * i + 15}" font-size="12">{html.escape(k)}</text>'
        f'<rect x="140" y="{22 * i + 4}" height="16" width="{(W - 220) * v / top:.1f}" '
        f'fill="#2563eb"/><text x="{145 + (W - 220) * v / top:.1f}" y="{22 * i + 15}" '
        f'font-size="11">{v:.3f}</text>'
        for i, (k, v) in enumerate(rows)
    )
    return (
        f'<svg width="{W}" height="{h}" role="img" aria-label="parameter importance">{bars}</svg>'
    )


def _day(ts: float | None) -> str:
    return "end" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def wf_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>window</th><th>in-sample</th><th>out-of-sample</th><th>best params</th>"
        "<th>IS objective</th><th>OOS objective</th><th>OOS return %</th><th>OOS trades</th></tr>"
    )
    body = "".join(
        f"<tr><td>{r['window']}</td><td>{_day(r['is_from'])} .. {_day(r['is_to'])}</td>"
        f"<td>{_day(r['oos_from'])} .. {_day(r['oos_to'])}</td>"
        f"<td>{html.escape(str(r.get('params')))}</td><td>{_num(r.get('is'))}</td>"
        f"<td>{_num(r.get('oos'))} {html.escape(r.get('why') or '')}</td>"
        f"<td>{_num(r.get('oos_return_pct'))}</td><td>{_num(r.get('oos_trades'))}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def write_report(
    path: Path,
    studies: list[optuna.Study],
    summary: dict[str, Any],
    best_equity: list[tuple[float, float]],
    walk_forward: dict[str, Any] | None,
) -> Path:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>AEGIS optimize</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;max-width:900px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 6px;"
        "font-size:12px}</style></head><body><h1>AEGIS optimize</h1>",
        "<table>",
        *(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in summary.items()
        ),
        "</table>",
    ]
    for study in studies:
        imp, how = importance(study)
        parts += [
            f"<h2>{html.escape(study.study_name)}: objective per trial</h2>",
            "<p>blue: complete, grey: pruned, red: failed (under the axis); green: best so far</p>",
            svg_trials(study.trials),
            f"<h3>parameter importance ({html.escape(how)})</h3>",
            svg_bars(imp),
        ]
    if best_equity:
        parts += ["<h2>best trial's equity</h2>", svg_line(best_equity, "best equity")]
    if walk_forward is not None:
        parts += [
            "<h2>walk-forward</h2>",
            wf_table(walk_forward["rows"]),
            "<h3>stitched out-of-sample equity</h3>",
            svg_line(walk_forward["equity"], "stitched out-of-sample equity"),
        ]
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
