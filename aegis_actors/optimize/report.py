"""optimize-report.html: one self-contained page, inline SVG, no script or network."""

from __future__ import annotations

import html
import math
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

W, H, PAD = 720, 220, 36
COLOURS = {"COMPLETE": "#2563eb", "PRUNED": "#9ca3af", "FAIL": "#dc2626"}


def _scored(t: FrozenTrial) -> bool:
    """COMPLETE: a pruned trial's `values` is its last intermediate value (Optuna)."""
    return t.state == TrialState.COMPLETE and bool(t.values)


def _first(t: FrozenTrial) -> float:
    return float(t.values[0])


def importance(study: optuna.Study) -> tuple[dict[str, float], str]:
    """Optuna's default importance (PED-ANOVA in Optuna 5; of the first objective when there
    are several); with too few trials, |correlation| of each numeric param with it
    (normalised), saying so."""
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.values]
    if len(done) < 2:
        return {}, "too few completed trials for parameter importance"
    multi = len(study.directions) > 1
    try:
        with warnings.catch_warnings():  # the negated target below is the documented way
            warnings.simplefilter("ignore", UserWarning)
            imp = optuna.importance.get_param_importances(
                study,
                target=(lambda t: -_first(t)) if multi else None,  # high is good
            )
        return dict(imp), "optuna.importance" + (", first objective" if multi else "")
    except Exception:  # optuna refuses e.g. a single distinct value: fall back
        pass
    ys = [_first(t) for t in done]
    scores: dict[str, float] = {}
    for name in {k for t in done for k in t.params}:
        pairs = [
            (float(t.params[name]), y)
            for t, y in zip(done, ys, strict=True)
            if isinstance(t.params.get(name), int | float)
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


def svg_trials(trials: list[FrozenTrial], best_line: bool = True) -> str:
    """The (first) objective per trial; the best-so-far line for one objective."""
    scored = [t for t in trials if _scored(t)]
    if not scored:
        return "<p>no trial scored</p>"
    xs = [float(t.number) for t in trials]
    sx = _scale(xs, PAD, W - 8)
    sy = _scale([_first(t) for t in scored], H - PAD, 8)
    dots, best, line = [], -math.inf, []
    for t in sorted(trials, key=lambda t: t.number):
        colour = COLOURS.get(t.state.name, "#000")
        if _scored(t):
            best = max(best, _first(t))
            if best_line:
                line.append(f"{sx(t.number):.1f},{sy(best):.1f}")
            y = sy(_first(t))
        else:
            y = H - PAD + 12  # pruned / failed: a mark under the axis
        dots.append(
            f'<circle cx="{sx(t.number):.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
            f"<title>trial {t.number} {t.state.name} {t.values if _scored(t) else ''} "
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
    if isinstance(v, list | tuple):
        return " / ".join(_num(x) for x in v)
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def pareto(study: optuna.Study, objectives: tuple[str, ...], chosen: int | None) -> str:
    """The first two objectives of every complete trial (grey), the front (blue) and the
    chosen trial (red); then the front as a table."""
    from aegis_actors.optimize.front import front, scored

    done, best = scored(study.trials), front(study)
    if not done:
        return "<p>no trial scored</p>"
    on = {t.number for t in best}
    sx = _scale([t.values[0] for t in done], PAD, W - 8)
    sy = _scale([t.values[1] for t in done], H - PAD, 8)
    dots = []
    for t in sorted(done, key=lambda t: (t.number in on, t.number == chosen)):
        colour = "#dc2626" if t.number == chosen else "#2563eb" if t.number in on else "#9ca3af"
        dots.append(
            f'<circle cx="{sx(t.values[0]):.1f}" cy="{sy(t.values[1]):.1f}" r="4" '
            f'fill="{colour}"><title>trial {t.number} {_num(t.values)} '
            f"{html.escape(str(t.params))}</title></circle>"
        )
    axes = (
        f'<text x="{W - 8}" y="{H - 4}" font-size="11" text-anchor="end">'
        f"{html.escape(objectives[0])} &#8594;</text>"
        f'<text x="2" y="12" font-size="11">{html.escape(objectives[1])} &#8593;</text>'
    )
    head = "".join(f"<th>{html.escape(n)}</th>" for n in objectives)
    rows = "".join(
        f"<tr><td>{t.number}{' (chosen)' if t.number == chosen else ''}</td>"
        + "".join(f"<td>{_num(v)}</td>" for v in t.values)
        + f"<td>{html.escape(str(t.params))}</td></tr>"
        for t in best
    )
    return (
        f'<svg width="{W}" height="{H}" role="img" aria-label="Pareto front">{axes}'
        f"{''.join(dots)}</svg><table><tr><th>trial</th>{head}<th>params</th></tr>{rows}</table>"
    )


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
    objectives: tuple[str, ...] = ("sharpe",),
    chosen: int | None = None,
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
    multi = len(objectives) > 1
    for study in studies:
        imp, how = importance(study)
        what = f"{objectives[0]} (first objective)" if multi else "objective"
        parts += [
            f"<h2>{html.escape(study.study_name)}: {html.escape(what)} per trial</h2>",
            "<p>blue: complete, grey: pruned, red: failed (under the axis)"
            + ("" if multi else "; green: best so far")
            + "</p>",
            svg_trials(study.trials, best_line=not multi),
            f"<h3>parameter importance ({html.escape(how)})</h3>",
            svg_bars(imp),
        ]
    if multi:
        parts += [
            "<h2>Pareto front</h2>",
            f"<p>{html.escape(objectives[0])} against {html.escape(objectives[1])}: grey "
            "complete, blue on the front, red the trial written to best.toml</p>",
            pareto(studies[-1], objectives, chosen),
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
