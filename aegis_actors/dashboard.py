"""The dashboard: an HTML page, `/api/status` (JSON), `/api/tree` and `/metrics` (Prometheus).

The page is one static file with inline script and SVG (no CDN, no build step) that
fetches `/api/status` every two seconds. The HTTP server runs on its own thread; status
requests ask actors with a timeout, so a slow actor makes a slow page, never a stuck actor.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aegis_actors.base import AegisActor
from aegis_actors.runtime import Runtime
from aegis_actors.status import collect_status

PAGE = (Path(__file__).parent / "web" / "dashboard.html").read_bytes()


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
                return self.reply(200, "text/html; charset=utf-8", PAGE)
            return self.reply(404, "text/plain", b"not found\n")

        def json(self, data: Any) -> None:
            body = json.dumps(data, default=str).encode()
            self.reply(200, "application/json", body)

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
