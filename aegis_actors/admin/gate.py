"""The gate: every raw message from the channel is checked here, on the subscriber thread.

Junk is refused before it reaches the admin actor's mailbox, so a flood costs a JSON
parse per message and can never queue ahead of a valid command. Every refusal is
counted; one with a usable id gets a reply; the security log is rate-limited so a
flood is one summary line a second, not a million lines.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from loguru import logger
from prometheus_client import Counter

from aegis_actors.admin.channel import Publisher
from aegis_actors.admin.protocol import TS_WINDOW_S, Refusal, Request, SeenIds, check, reply_channel
from aegis_actors.metrics import Metrics
from supervisors import Clock

security = logger.bind(actor="admin", security=True)
LOG_PER_S = 20
SEEN_TTL_S = int(2 * TS_WINDOW_S) + 1

# One round trip for a read-only answer: remember the id (refusing a replay that a restarted
# process would not have in memory) and publish the reply, atomically.
ANSWER_IF_NEW = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('PUBLISH', KEYS[2], ARGV[1])
end
return -1
"""


class AdminMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.refused = Counter(
            "aegis_admin_refused_total", "Admin requests refused, by reason", ["reason"], registry=r
        )
        self.commands = Counter(
            "aegis_admin_commands_total",
            "Admin commands run, by command and outcome",
            ["cmd", "outcome"],
            registry=r,
        )
        self.dropped = Counter(
            "aegis_admin_dropped_total",
            "Admin replies or events dropped because Redis could not keep up",
            ["what"],
            registry=r,
        )
        self.redis_errors = Counter(
            "aegis_admin_redis_errors_total", "Redis errors seen by the admin channel", registry=r
        )


@dataclass
class RunState:
    """What outlives a restart of the admin actor: replay memory, metrics, counts."""

    metrics: AdminMetrics
    seen: SeenIds = field(default_factory=SeenIds)
    refused: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_refusal(self, reason: str) -> None:
        with self.lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
        self.metrics.refused.labels(reason).inc()


_PER_RUN: weakref.WeakKeyDictionary[Metrics, RunState] = weakref.WeakKeyDictionary()
_PER_RUN_LOCK = threading.Lock()


def run_state(metrics: Metrics) -> RunState:
    with _PER_RUN_LOCK:
        state = _PER_RUN.get(metrics)
        if state is None:
            state = _PER_RUN[metrics] = RunState(AdminMetrics(metrics))
        return state


class SecurityLog:
    """At most `per_s` refusal lines a second; the rest summed into one line."""

    def __init__(self, clock: Clock, per_s: int = LOG_PER_S) -> None:
        self.clock, self.per_s = clock, per_s
        self.window = clock.now()
        self.logged = 0
        self.suppressed: dict[str, int] = {}

    def refused(self, r: Refusal) -> None:
        self.tick()
        if self.logged < self.per_s:
            self.logged += 1
            security.warning(
                "admin refused ({}): {} [id={} cmd={!r}]", r.reason, r.error, r.id, r.cmd
            )
        else:
            self.suppressed[r.reason] = self.suppressed.get(r.reason, 0) + 1

    def tick(self) -> None:
        """Close the window once it is a second old (also called when the channel is idle)."""
        now = self.clock.now()
        if now - self.window >= 1.0:
            self.flush(now)

    def flush(self, now: float) -> None:
        if self.suppressed:
            security.warning(
                "admin refused {} more requests in {:.1f} s (not logged one by one): {}",
                sum(self.suppressed.values()),
                now - self.window,
                dict(self.suppressed),
            )
        self.window, self.logged, self.suppressed = now, 0, {}


class Gate:
    """Callable on each raw message: refuse it (reply, count, log) or hand it on."""

    def __init__(
        self,
        *,
        channel: str,
        secret: str,
        clock: Clock,
        state: RunState,
        replies: Publisher,
        client: redis.Redis,
        deliver: Callable[[Request], None],
        answer: Callable[[Request], str | None] | None = None,
        answered: Callable[[Request], None] | None = None,
    ) -> None:
        self.channel, self.secret, self.clock, self.state = channel, secret, clock, state
        self.replies, self.client, self.deliver = replies, client, deliver
        self.answer = answer  # a read-only command's reply text, or None: deliver it
        self.answered = answered  # told once that reply went out
        self.answer_if_new = client.register_script(ANSWER_IF_NEW)
        self.log = SecurityLog(clock)

    def __call__(self, raw: bytes | str) -> None:
        result = check(raw, secret=self.secret, now=self.clock.now(), seen=self.state.seen)
        if isinstance(result, Request) and self.answered_here(result):
            return
        if isinstance(result, Request) and not self.first_use(result):
            result = replayed(result)
        if isinstance(result, Refusal):
            self.refuse(result)
            return
        self.deliver(result)

    def idle(self) -> None:
        self.log.tick()

    def answered_here(self, req: Request) -> bool:
        """A read-only command answered on this thread (replay check and reply in one
        Redis round trip); False: it goes the usual way (checked, then delivered)."""
        text = self.answer(req) if self.answer is not None else None
        if text is None:
            return False
        key = f"{self.channel}:seen:{req.id}"
        try:
            sent = self.answer_if_new(
                keys=[key, reply_channel(self.channel, req.id)], args=[text, SEEN_TTL_S]
            )
        except redis.RedisError:
            self.state.metrics.redis_errors.inc()
            return False
        if sent == -1:
            self.refuse(replayed(req))
        elif self.answered is not None:
            self.answered(req)
        return True

    def first_use(self, req: Request) -> bool:
        """Also remember the id in Redis, so a restarted process still refuses a replay."""
        key = f"{self.channel}:seen:{req.id}"
        try:
            return bool(self.client.set(key, b"1", nx=True, ex=SEEN_TTL_S))
        except redis.RedisError:
            self.state.metrics.redis_errors.inc()
            return True  # the in-memory check already passed

    def refuse(self, r: Refusal) -> None:
        self.state.count_refusal(r.reason)
        self.log.refused(r)
        if r.id is not None:
            body = {"id": r.id, "ok": False, "error": r.error}
            self.replies.put(reply_channel(self.channel, r.id), json.dumps(body))


def replayed(req: Request) -> Refusal:
    return Refusal("replay", f"id {req.id} was already used (replay refused)", req.id, req.cmd)
