"""The dashboard: an HTML page, `/api/status` (JSON), `/api/tree` and `/metrics` (Prometheus).

The page is one static file with inline script and SVG (no CDN, no build step) that
fetches `/api/status` every two seconds. The HTTP server runs on its own thread; status
requests ask actors with a timeout, so a slow actor makes a slow page, never a stuck actor.
"""

from __future__ import annotations

import errno
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aegis_actors.base import AegisActor
from aegis_actors.redact import redact
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
                return self.json(redact(collect_status(rt)))
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
    """The HTTP server. A port already in use is one error line and the run goes on
    without a dashboard (restarting could never free the port: it would only loop)."""

    server: ThreadingHTTPServer | None = None

    def on_start(self) -> None:
        cfg = self.settings.dashboard
        try:
            self.server = ThreadingHTTPServer((cfg.host, cfg.port), make_handler(self.rt))
        except OSError as exc:
            self.error = (
                f"port {cfg.port} in use; set dashboard.port or 0"
                if exc.errno == errno.EADDRINUSE
                else f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}"
            )
            self.log.error("dashboard not started: {} (running without it)", self.error)
            return
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="aegis-dashboard", daemon=True
        )
        self.thread.start()
        self.log.info("dashboard on http://{}:{}/", cfg.host, self.server.server_address[1])

    @property
    def port(self) -> int | None:
        return int(self.server.server_address[1]) if self.server is not None else None

    def stopping(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def status(self) -> dict[str, Any]:
        if self.server is None:
            return {"url": None, "error": getattr(self, "error", "not started")}
        return {"url": f"http://{self.settings.dashboard.host}:{self.port}/"}
