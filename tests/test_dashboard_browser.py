"""The dashboard in a real headless Chromium, driven over the DevTools protocol: the page
loads with no console error, shows mode, posture, the latency chart and the tree, and
updates after events. A screenshot is saved under artifacts/."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from alerts_receivers import free_port
from conftest import drive, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

# CI installs Debian's chromium (.ci/run), so there a missing browser is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed"
)


class Browser:
    """A headless Chromium and one page, spoken to over the DevTools websocket."""

    def __init__(self) -> None:
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="aegis-chromium-")
        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={self.profile}",
                f"--remote-debugging-port={self.port}",
                "--window-size=1400,1800",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{self.port}"

        def page_ws() -> str | None:
            try:
                pages = requests.get(base + "/json", timeout=1).json()
            except requests.RequestException:
                return None
            return next((p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page"), None)

        url = wait_until(page_ws, timeout=20, what="chromium devtools")
        self.ws = websocket.create_connection(url, timeout=10, suppress_origin=True)
        self.ids = itertools.count(1)
        self.errors: list[str] = []
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")

    def _note(self, msg: dict[str, Any]) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append(json.dumps(p.get("args"))[:300])
        elif method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(p.get("exceptionDetails"))[:300])
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            self.errors.append(p["entry"].get("text", "")[:300])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self._note(msg)

    def js(self, expr: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


@pytest.mark.e2e
def test_dashboard_in_headless_chromium(aegis_factory: Any, vclock: Any, browser: Browser) -> None:
    port = free_port()
    app = aegis_factory(dashboard={"port": port}, feed={"symbols": ["AAPL", "MSFT"]})
    drive(vclock, 5)
    browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/?refresh_ms=250")
    wait_until(
        lambda: browser.js("document.getElementById('mode').textContent") == "normal",
        timeout=15,
        what="mode shown",
    )
    assert browser.js("document.getElementById('posture').textContent") in (
        "offensive",
        "guerrilla",
        "defensive",
    )
    bars = browser.js("document.querySelectorAll('#latency-chart rect.bar').length")
    sla_lines = browser.js("document.querySelectorAll('#latency-chart line.sla').length")
    assert bars == 15 and sla_lines == 15  # 5 stages x (P50, P95, P99) and x 3 SLA lines
    tree = browser.js("document.getElementById('tree').innerText")
    for name in ("root", "watchdog", "roles", "analyst", "market", "restarts"):
        assert name in tree
    assert "CPU" in browser.js("document.getElementById('health').innerText")

    def events_shown() -> int:
        text = browser.js("document.getElementById('rates').innerText") or ""
        line = next((ln for ln in text.splitlines() if ln.startswith("events")), "")
        return sum(int(x) for x in line.replace(",", " ").split() if x.isdigit())

    before = wait_until(events_shown, timeout=10, what="events on the page")
    drive(vclock, 5)  # more events flow; the page must follow without a reload
    wait_until(lambda: events_shown() > before, timeout=10, what="page update")
    shot = browser.call("Page.captureScreenshot", format="png")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))
    browser.call("Runtime.evaluate", expression="1")  # drain pending console events
    assert browser.errors == []
    assert app.rt is not None


@pytest.mark.e2e
def test_dashboard_reads_at_1280x800(aegis_factory: Any, vclock: Any, browser: Browser) -> None:
    """A trader's laptop: labels clear of the bars, each P99 on its own row, the process's
    own CPU measured, an equity line, and nothing wider than the screen."""
    port = free_port()
    aegis_factory(dashboard={"port": port}, feed={"symbols": ["AAPL", "MSFT", "SPY"]})
    drive(vclock, 30, step=0.5)
    health = requests.get(f"http://127.0.0.1:{port}/api/status", timeout=5).json()["health"]
    assert health["process_cpu_pct"] > 0.0  # the tree just worked in this very process
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=1280,
        height=800,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/?refresh_ms=250")
    wait_until(
        lambda: browser.js("document.querySelectorAll('#equity-line').length") == 1,
        timeout=15,
        what="equity line drawn",
    )
    points = browser.js("document.getElementById('equity-line').getAttribute('points')")
    assert len(points.split()) >= 5  # a point every 5 s of the 30 s driven
    geometry = json.loads(
        browser.js(
            """JSON.stringify((() => {
              const box = (e) => { const r = e.getBoundingClientRect();
                return [r.left, r.top, r.right, r.bottom]; };
              const svg = document.getElementById('latency-chart');
              return {
                labels: [...svg.querySelectorAll('text.stage')].map(box),
                p99: [...svg.querySelectorAll('text.p99')].map(box),
                bars: [...svg.querySelectorAll('rect.bar')].map(box),
                width: document.documentElement.scrollWidth,
              };
            })())"""
        )
    )

    def overlap(a: list[float], b: list[float]) -> bool:
        return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5

    assert len(geometry["labels"]) == len(geometry["p99"]) == 5
    for text in geometry["labels"] + geometry["p99"]:
        assert not any(overlap(text, bar) for bar in geometry["bars"]), text
    for label, p99 in zip(geometry["labels"], geometry["p99"], strict=True):
        assert abs(label[1] - p99[1]) < 1 and not overlap(label, p99)  # same row, apart
    assert geometry["width"] <= 1280  # no sideways scrolling
    cpu = browser.js("document.getElementById('health').innerText")
    assert "this process" in cpu and "% of one core" in cpu  # idle between polls reads 0
    shot = browser.call("Page.captureScreenshot", format="png")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard-1280x800.png").write_bytes(base64.b64decode(shot["data"]))
    browser.call("Runtime.evaluate", expression="1")
    assert browser.errors == []
