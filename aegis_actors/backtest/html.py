"""report.html: one self-contained page (inline SVG, inline CSS, no script, no CDN) with
the equity curve and trade markers, the drawdown, the headline figures and the trades."""

from __future__ import annotations

import html
from typing import Any

from aegis_actors.backtest.report import Trade, drawdown, fmt_ts

W, H, PAD = 900, 260, 40
MAX_POINTS = 2000  # the curve is thinned to this many points; markers stay exact
MAX_ROWS = 1000  # trades listed in the table (the CSV has them all)


def _scale(lo: float, hi: float, a: float, b: float) -> Any:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _path(times: list[float], values: list[float], h: int) -> tuple[str, Any, Any]:
    sx = _scale(times[0], times[-1], PAD, W - 10)
    sy = _scale(min(values), max(values), h - 20, 10)
    step = max(1, len(times) // MAX_POINTS)
    pts = [(times[i], values[i]) for i in range(0, len(times), step)]
    pts.append((times[-1], values[-1]))
    d = "M" + " L".join(f"{sx(t):.1f},{sy(v):.1f}" for t, v in pts)
    return d, sx, sy


def _svg(title: str, body: str, h: int, lo: str, hi: str) -> str:
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}"'
        f' role="img" aria-label="{html.escape(title)}">'
        f'<rect x="0" y="0" width="{W}" height="{h}" fill="#fff" stroke="#ccc"/>'
        f'<text x="4" y="16" font-size="11">{html.escape(hi)}</text>'
        f'<text x="4" y="{h - 8}" font-size="11">{html.escape(lo)}</text>'
        f"{body}</svg></figure>"
    )


def render(
    report: dict[str, Any],
    trades: list[Trade],
    equity: list[tuple[float, float]],
    iso: bool,
) -> str:
    times = [t for t, _ in equity] or [0.0, 1.0]
    values = [e for _, e in equity] or [0.0, 0.0]
    if len(times) == 1:
        times, values = times * 2, values * 2
    d, sx, sy = _path(times, values, H)
    marks = []
    for t in trades:
        if not times[0] <= t.ts <= times[-1]:
            continue
        j = min(range(len(times)), key=lambda k: abs(times[k] - t.ts)) if len(times) < 64 else None
        y = sy(values[j]) if j is not None else sy(_at(times, values, t.ts))
        color, shape = ("#1a7f37", "▲") if t.side == "buy" else ("#cf222e", "▼")
        marks.append(
            f'<text class="trade {t.side}" x="{sx(t.ts):.1f}" y="{y:.1f}" fill="{color}" '
            f'font-size="10" text-anchor="middle">{shape}<title>{html.escape(t.side)} '
            f"{t.qty:g} {html.escape(t.symbol)} @ {t.price:.4f} {fmt_ts(t.ts, iso)}</title></text>"
        )
    span = f"{fmt_ts(times[0], iso)} .. {fmt_ts(times[-1], iso)}"
    eq_svg = _svg(
        f"Equity ({span}; ▲ buy, ▼ sell)",
        f'<path class="equity" d="{d}" fill="none" stroke="#0969da" stroke-width="1.5"/>'
        + "".join(marks),
        H,
        f"{min(values):,.2f}",
        f"{max(values):,.2f}",
    )
    _, _, dd = drawdown(values)
    dd_path, _, _ = _path(times, dd, 160)
    dd_svg = _svg(
        f"Drawdown, % under the running peak ({span})",
        f'<path class="drawdown" d="{dd_path}" fill="none" stroke="#cf222e" stroke-width="1"/>',
        160,
        f"{min(dd):.2f}%",
        "0%",
    )
    keys = [
        "return_pct",
        "cagr_pct",
        "sharpe",
        "sortino",
        "calmar",
        "max_drawdown_pct",
        "max_drawdown_bars",
        "max_drawdown_days",
        "exposure_pct",
        "trades",
        "win_rate_pct",
        "avg_trade",
        "profit_factor",
        "final_equity",
    ]
    figures = "".join(
        f"<tr><th>{k}</th><td>{html.escape(str(report.get(k)))}</td></tr>" for k in keys
    )
    for group in ("accuracy", "posture_time_pct", "bad_rows", "data_notes", "llm"):
        for k, v in (report.get(group) or {}).items():
            figures += f"<tr><th>{group}.{k}</th><td>{html.escape(str(v))}</td></tr>"
    rows = "".join(
        f"<tr><td>{fmt_ts(t.ts, iso)}</td><td>{html.escape(t.symbol)}</td><td>{t.side}</td>"
        f"<td>{t.qty:g}</td><td>{t.price:.4f}</td><td>{t.fee:.4f}</td>"
        f"<td>{html.escape(t.intent)}</td></tr>"
        for t in trades[:MAX_ROWS]
    )
    s = report.get("strategy", {})
    title = (
        f"AEGIS backtest: {', '.join(report.get('symbols', []))} — "
        f"{s.get('name', 'aegis')} ({report.get('from')} .. {report.get('to')})"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#1f2328}}
table{{border-collapse:collapse;margin:12px 0}}
td,th{{border:1px solid #d0d7de;padding:3px 8px;text-align:left}}
figure{{margin:12px 0}} figcaption{{font-weight:600}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{report.get("bars")} bars, {report.get("events")} events, {report.get("orders")} orders,
{report.get("fills")} fills. Return {report.get("return_pct")} %.</p>
{eq_svg}
{dd_svg}
<h2>Figures</h2><table id="figures">{figures}</table>
<h2>Trades</h2>
<table id="trades"><thead><tr><th>time</th><th>symbol</th><th>side</th><th>qty</th>
<th>price</th><th>fee</th><th>intent</th></tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""


def _at(times: list[float], values: list[float], ts: float) -> float:
    import bisect

    i = min(len(times) - 1, bisect.bisect_left(times, ts))
    return values[i]
