"""A small LLM API server for tests and benches, on 127.0.0.1, speaking both wire formats.

`POST /chat/completions` answers like an OpenAI-compatible API (DeepSeek) and
`POST /v1/messages` like Anthropic's Messages API, usage fields included. What it answers
is scripted per role (recognised from the system prompt): JSON answers, HTTP errors,
429 with Retry-After, malformed bodies, schema-violating JSON, hangs, and latency.

Latency is scripted on a clock: with a VirtualClock the handler parks until the virtual
time has moved on (the test advances it), so a "2 s" answer takes no real time; with no
virtual clock it sleeps in real time (benches).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from supervisors.clock import VirtualClock

ANSWERS: dict[str, dict[str, Any]] = {
    "analyst": {
        "direction": "up",
        "expected_move_pct": 0.6,
        "confidence": 0.8,
        "pattern": "uptrend",
        "risk_score": 0.2,
        "rationale": "higher highs on rising volume",
    },
    "verifier": {"verdict": "approve", "reasons": ["checks passed"], "confidence": 0.9},
    "commander": {
        "action": "buy",
        "size_fraction": 0.5,
        "order_type": "limit",
        "limit_price": None,
        "stop_loss": None,
        "take_profit": None,
        "confidence": 0.75,
        "reason": "trend confirmed and approved",
    },
}


@dataclass
class Step:
    """One scripted reply. `answer` is a dict (sent as JSON text) or raw text."""

    answer: Any = None
    status: int = 200
    retry_after: str | None = None
    body: str | None = None  # raw HTTP body (malformed replies)
    latency_s: float = 0.0  # on the server's clock
    hang: bool = False  # hold the request until release() (or 10 real seconds)
    tokens: tuple[int, int] = (120, 40)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    role: str
    arrived: float


class _Server(ThreadingHTTPServer):
    # a real API accepts a burst of new connections; http.server's default backlog of 5
    # drops SYNs under one (the client then waits a second to retry: a fake "slow API")
    request_queue_size = 1024


@dataclass
class FakeLlm:
    clock: VirtualClock | None = None
    default_latency: dict[str, float] = field(default_factory=dict)  # role -> seconds
    scripts: dict[str, deque[Step]] = field(default_factory=lambda: defaultdict(deque))
    seen: list[Seen] = field(default_factory=list)
    dues: list[float] = field(default_factory=list)  # parked handlers' due times
    api_key: str | None = None  # when set, any other key (or none) is answered 401

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # answer in one segment, as real servers do
            wbufsize = 1 << 16

            def log_message(self, *_a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                fake.handle(self)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, role: str, *steps: Step) -> None:
        with self._lock:
            self.scripts[role].extend(steps)

    def calls(self, role: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if role is None or s.role == role]

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- serving -----------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now() if self.clock else time.monotonic()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length", "0"))
        body = json.loads(h.rfile.read(length) or b"{}")
        anthropic = h.path.endswith("/v1/messages")
        system = body.get("system", "") if anthropic else body["messages"][0]["content"]
        role = next((r for r in ANSWERS if f"You are the {r}" in system), "unknown")
        arrived = self.now()
        if self.api_key is not None:
            given = h.headers.get("x-api-key") or h.headers.get("authorization", "")
            if given.removeprefix("Bearer ") != self.api_key:
                payload = b'{"error": {"message": "invalid api key"}}'
                h.send_response(401)
                h.send_header("content-type", "application/json")
                h.send_header("content-length", str(len(payload)))
                h.end_headers()
                h.wfile.write(payload)
                return
        with self._lock:
            self.seen.append(
                Seen(h.path, {k.lower(): v for k, v in h.headers.items()}, body, role, arrived)
            )
            queue = self.scripts.get(role)
            step = queue.popleft() if queue else Step(latency_s=self.default_latency.get(role, 0))
        if step.hang:
            self.park(float("inf"), lambda: self._release.wait(10.0))
        elif step.latency_s > 0:
            self.wait_until(arrived + step.latency_s)
        if step.body is not None or step.status != 200:
            payload = (step.body if step.body is not None else '{"error": "scripted"}').encode()
            h.send_response(step.status)
            if step.retry_after is not None:
                h.send_header("Retry-After", step.retry_after)
        else:
            answer = ANSWERS.get(role, {}) if step.answer is None else step.answer
            text = answer if isinstance(answer, str) else json.dumps(answer)
            payload = json.dumps(wire(anthropic, body.get("model", ""), text, step.tokens)).encode()
            h.send_response(200)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(payload)))
        h.end_headers()
        try:
            h.wfile.write(payload)
            h.wfile.flush()
        except OSError:
            pass  # the client gave up

    def park(self, due: float, wait: Any) -> None:
        with self._lock:
            self.dues.append(due)
        try:
            wait()
        finally:
            with self._lock:
                self.dues.remove(due)

    def parked(self) -> int:
        """Requests held for a time still in the future (hangs included)."""
        now = self.now()
        with self._lock:
            return sum(1 for d in self.dues if d > now)

    def wait_until(self, due: float) -> None:
        if self.clock is None:
            time.sleep(max(0.0, due - time.monotonic()))
            return
        clock = self.clock
        self.park(due, lambda: clock.sleep_until(due, real_timeout_s=10.0))


def wire(anthropic: bool, model: str, text: str, tokens: tuple[int, int]) -> dict[str, Any]:
    tin, tout = tokens
    if anthropic:
        return {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": tin, "output_tokens": tout},
        }
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout},
    }
