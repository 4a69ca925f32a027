"""The daily report as one self-contained HTML page: inline CSS and SVG, no script, no CDN."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any


def _money(v: Any) -> str:
    return f"{v:,.2f}" if isinstance(v, int | float) else "-"


def _hhmm(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def equity_svg(curve: list[list[float]], w: int = 760, h: int = 220) -> str:
    """Equity through the day as a polyline, with the opening level dashed."""
    if len(curve) < 2:
        return f'<svg width="{w}" height="{h}" role="img"><text x="10" y="20">no data</text></svg>'
    pad_l, pad_r, pad_t, pad_b = 80, 10, 10, 24
    t0, t1 = curve[0][0], curve[-1][0]
    vals = [e for _t, e in curve]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-6:
        lo, hi = lo - 1, hi + 1

    def x(t: float) -> float:
        return pad_l + (t - t0) / ((t1 - t0) or 1) * (w - pad_l - pad_r)

    def y(e: float) -> float:
        return pad_t + (hi - e) / (hi - lo) * (h - pad_t - pad_b)

    pts = " ".join(f"{x(t):.1f},{y(e):.1f}" for t, e in curve)
    base = y(curve[0][1])
    colour = "#1a7f37" if curve[-1][1] >= curve[0][1] else "#c62828"
    return (
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="equity through the day">'
        f'<line x1="{pad_l}" y1="{base:.1f}" x2="{w - pad_r}" y2="{base:.1f}" '
        f'stroke="#999" stroke-dasharray="4 3"/>'
        f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>'
        f'<text x="{pad_l - 6}" y="{pad_t + 10}" text-anchor="end" font-size="11">'
        f"{_money(hi)}</text>"
        f'<text x="{pad_l - 6}" y="{h - pad_b}" text-anchor="end" font-size="11">'
        f"{_money(lo)}</text>"
        f'<text x="{pad_l}" y="{h - 6}" font-size="11">{_hhmm(t0)} UTC</text>'
        f'<text x="{w - pad_r}" y="{h - 6}" text-anchor="end" font-size="11">'
        f"{_hhmm(t1)} UTC</text></svg>"
    )


def latency_svg(latency: dict[str, Any], w: int = 760) -> str:
    """Per stage: the P50/P95/P99 bars against the stage's target (tick) and critical (end)."""
    rows = list(latency.items())
    row_h, label_w, pad_r = 34, 210, 120
    h = row_h * len(rows) + 20
    parts = [
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="latency per stage against its SLA">'
    ]
    for i, (stage, v) in enumerate(rows):
        top = 10 + i * row_h
        scale_max = max(float(v["critical_ms"]), float(v["p99_ms"]), 1.0)

        def x(ms: float, scale_max: float = scale_max) -> float:
            return label_w + ms / scale_max * (w - label_w - pad_r)

        parts.append(
            f'<text x="{label_w - 8}" y="{top + 16}" text-anchor="end" font-size="12">'
            f"{escape(stage)} (n={v['count']})</text>"
        )
        for j, (key, colour) in enumerate(
            (("p50_ms", "#4c78a8"), ("p95_ms", "#f58518"), ("p99_ms", "#e45756"))
        ):
            ms = float(v[key])
            parts.append(
                f'<rect x="{label_w}" y="{top + j * 8}" width="{max(1.0, x(ms) - label_w):.1f}" '
                f'height="7" fill="{colour}"><title>{key[:3]} {ms:.1f} ms</title></rect>'
            )
        for key, colour in (("target_ms", "#1a7f37"), ("critical_ms", "#c62828")):
            xx = x(float(v[key]))
            parts.append(
                f'<line x1="{xx:.1f}" y1="{top - 2}" x2="{xx:.1f}" y2="{top + 26}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        parts.append(
            f'<text x="{w - pad_r + 4}" y="{top + 16}" font-size="11">p99 {float(v["p99_ms"]):.0f} '
            f"/ {float(v['target_ms']):.0f}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{body or '<tr><td colspan=99>none</td></tr>'}</table>"


def _pnl_table(key: str, groups: dict[str, dict[str, Any]]) -> str:
    """One P&L table (per symbol or per posture): the same columns for either split."""
    return _table(
        [key, "realised", "unrealised", "fees", "net", "fills", "trades", "wins"],
        [
            [
                k,
                *(_money(v[m]) for m in ("realised", "unrealised", "fees", "net")),
                v["fills"],
                v["trades"],
                v["wins"],
            ]
            for k, v in groups.items()
        ],
    )


def render(r: dict[str, Any]) -> str:
    p = r["pnl"]
    wr = r.get("win_rate")
    head = (
        f"<p class=big>net P&amp;L <b>{_money(p['net'])}</b> · realised {_money(p['realised'])} · "
        f"unrealised {_money(p['unrealised'])} · fees {_money(p['fees'])} · "
        f"max drawdown {_money(p['max_drawdown'])} ({p['max_drawdown_pct']:.2f}%) · "
        f"trades {r['trades']} · win rate {'-' if wr is None else f'{wr * 100:.1f}%'}</p>"
    )
    sym = _pnl_table("symbol", r["by_symbol"])
    post = _pnl_table("posture", r["by_posture"])
    sizes = _table(
        ["posture", "entries", "average entry (of capital)", "at full conviction", "share of full"],
        [
            [
                k,
                v["entries"],
                "-" if v["average"] is None else f"{v['average'] * 100:.3f}%",
                f"{v['full_conviction'] * 100:g}%",
                "-" if v["share_of_full"] is None else f"{v['share_of_full'] * 100:.0f}%",
            ]
            for k, v in r["entry_size"].items()
        ],
    )
    acc = _table(
        ["figure", "value", "target", "samples", "status"],
        [
            [
                t["label"],
                "-" if t["value"] is None else f"{t['value'] * 100:.1f}%",
                f"{t['target'] * 100:g}%",
                t["samples"],
                t["status"].replace("_", " "),
            ]
            for t in r["accuracy"]["targets"]
        ],
    )
    llm = _table(
        ["role", "backend", "calls", "tokens in", "tokens out", "cost USD"],
        [
            [k, v["backend"], v["calls"], v["tokens_in"], v["tokens_out"], f"{v['cost_usd']:.4f}"]
            for k, v in r["llm"].items()
            if isinstance(v, dict)
        ],
    )
    al = r["alerts"]
    alerts = _table(
        ["level", "raised", "acknowledged"],
        [[k, v["raised"], v["acknowledged"]] for k, v in al["by_level"].items()],
    )
    changes = _table(
        ["time", "what", "from", "to", "reason"],
        [[_hhmm(c["ts"]), "mode", c["old"], c["new"], c["reason"]] for c in r["mode_changes"]]
        + [
            [_hhmm(c["ts"]), "posture", c["old"], c["new"], c["reason"]]
            for c in r["posture_changes"]
        ],
    )
    opens = _table(
        ["symbol", "qty", "avg", "mark", "unrealised", "stop", "take profit", "posture"],
        [
            [
                o["symbol"],
                o["qty"],
                o["avg_price"],
                o["mark"],
                _money(o["unrealised"]),
                o["stop_loss"] if o["stop_loss"] is not None else "NONE",
                o["take_profit"] if o["take_profit"] is not None else "-",
                o["posture"],
            ]
            for o in r["open_positions"]
        ],
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>AEGIS daily report {escape(r["date"])}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:1000px;color:#222}}
h1{{font-size:22px}} h2{{font-size:17px;margin-top:28px}}
table{{border-collapse:collapse;margin:6px 0}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right}}
th{{background:#f4f4f4}} td:first-child,th:first-child{{text-align:left}}
.big{{font-size:16px}} pre{{background:#f7f7f7;padding:8px}}
</style></head><body>
<h1>AEGIS daily report — {escape(r["date"])} (UTC)</h1>
{head}
<h2>Equity through the day</h2>
{equity_svg(r["equity_curve"])}
<h2>P&amp;L per symbol</h2>{sym}
<h2>P&amp;L per posture</h2>{post}
<h2>Entry size per posture (SPEC 3: the posture's size is the size at full conviction)</h2>{sizes}
<h2>Accuracy against SPEC 5.3 targets</h2>{acc}
<h2>Latency per stage against its SLA (bars p50/p95/p99; green target, red critical)</h2>
{latency_svg(r["latency"])}
<h2>LLM calls, tokens and cost per role</h2>{llm}
<h2>Alerts ({al["raised"]} raised, {al["acknowledged"]} acknowledged)</h2>{alerts}
<h2>Mode and posture changes</h2>{changes}
<h2>Open positions carried overnight</h2>{opens}
</body></html>
"""
