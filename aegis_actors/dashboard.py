"""The dashboard: an HTML page, `/api/status` (JSON), `/api/tree` and `/metrics` (Prometheus).

The HTTP server runs on its own thread; page requests ask actors for their status with
a timeout, so a slow actor makes a slow page, never a stuck actor.
"""

from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aegis_actors.base import AegisActor
from aegis_actors.runtime import Runtime
from aegis_actors.status import collect_status

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>AEGIS</title>
<meta http-equiv="refresh" content="2">
<style>body{{font-family:system-ui,sans-serif;margin:2em;background:#111;color:#ddd}}
table{{border-collapse:collapse}}td,th{{padding:.2em .8em;border-bottom:1px solid #333;
text-align:left}}h2{{margin-top:1.4em}}.mode{{font-size:1.6em}}</style></head><body>
<h1>AEGIS</h1><div class="mode" id="mode">mode <b>{mode}</b> &middot; posture <b>{posture}</b>
&middot; equity <b>{equity}</b> &middot; PnL <b>{pnl}</b></div>
<h2>Latency (ms)</h2><table id="latency"><tr><th>stage</th><th>n</th><th>p50</th><th>p95</th>
<th>p99</th></tr>{latency}</table>
<h2>Positions</h2><table id="positions"><tr><th>symbol</th><th>qty</th><th>avg</th>
<th>stop</th><th>target</th></tr>{positions}</table>
<h2>Alerts</h2><table id="alerts">{alerts}</table>
<p><a href="/api/status">/api/status</a> &middot; <a href="/api/tree">/api/tree</a> &middot;
<a href="/metrics">/metrics</a></p></body></html>"""


def render(status: dict[str, Any]) -> str:
    s = status.get("summary", {})
    lat = status.get("watchdog", {}).get("latency", {})
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['count']}</td><td>{v['p50_ms']:.1f}</td>"
        f"<td>{v['p95_ms']:.1f}</td><td>{v['p99_ms']:.1f}</td></tr>"
        for k, v in lat.items()
    )
    pos = status.get("execution", {}).get("positions", {}) or {}
    prow = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{p['qty']}</td><td>{p['avg_price']:.2f}</td>"
        f"<td>{p.get('stop_loss')}</td><td>{p.get('take_profit')}</td></tr>"
        for k, p in pos.items()
    )
    alerts = status.get("watchdog", {}).get("alerts", [])
    arow = "".join(
        f"<tr><td>{html.escape(str(a.get('level')))}</td><td>{html.escape(str(a.get('kind')))}"
        f"</td><td>{html.escape(str(a.get('message')))}</td></tr>"
        for a in reversed(alerts)
    )
    return _PAGE.format(
        mode=html.escape(str(s.get("mode"))),
        posture=html.escape(str(s.get("posture"))),
        equity=s.get("equity"),
        pnl=s.get("pnl"),
        latency=rows,
        positions=prow,
        alerts=arow,
    )


def make_handler(rt: Runtime) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                return self.reply(200, CONTENT_TYPE_LATEST, generate_latest(rt.metrics.registry))
            if path == "/api/status":
                return self.json(collect_status(rt))
            if path == "/api/tree":
                return self.json(rt.tree() if rt.tree else {})
            if path in ("/", "/index.html"):
                return self.reply(
                    200, "text/html; charset=utf-8", render(collect_status(rt)).encode()
                )
            return self.reply(404, "text/plain", b"not found\n")

        def json(self, data: Any) -> None:
            self.reply(200, "application/json", json.dumps(data, default=str).encode())

        def reply(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # access logs would drown the event log

    return Handler


class Dashboard(AegisActor):
    def on_start(self) -> None:
        cfg = self.settings.dashboard
        self.server = ThreadingHTTPServer((cfg.host, cfg.port), make_handler(self.rt))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="aegis-dashboard", daemon=True
        )
        self.thread.start()
        self.log.info("dashboard on http://{}:{}/", cfg.host, self.server.server_address[1])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stopping(self) -> None:
        if hasattr(self, "server"):
            self.server.shutdown()
            self.server.server_close()

    def status(self) -> dict[str, Any]:
        return {"url": f"http://{self.settings.dashboard.host}:{self.port}/"}
