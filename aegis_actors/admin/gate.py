"""The gate: every raw message from the channel is checked here, on the subscriber thread.

Junk is refused before it reaches the admin actor's mailbox, so it can never queue ahead
of a valid command, and cheaply enough to keep up with what one Redis connection
delivers: what cannot be a request (not a JSON object, no "sig") is refused without
parsing, a message already refused is refused again by a dictionary lookup, and counts
reach the metrics in batches. Every refusal is counted; one with a usable id gets a
reply, at most `REPLIES_PER_S` a second (the rest are counted, not answered); the
security log is rate-limited so a flood is one summary line a second, not a million.
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
from aegis_actors.admin.protocol import (
    MAX_BYTES,
    TS_WINDOW_S,
    Refusal,
    Request,
    SeenIds,
    check,
    reply_channel,
)
from aegis_actors.metrics import Metrics
from supervisors import Clock

security = logger.bind(actor="admin", security=True)
LOG_PER_S = 20
REPLIES_PER_S = 200  # refusal replies a second; a flood's junk is counted, not answered
REFUSED_CACHE = 4096  # distinct raw messages remembered as refused (deterministic reasons)
FLUSH_EVERY = 1024  # refusals counted locally before they reach the metrics ...
FLUSH_S = 0.1  # ... or this long, whichever comes first
# Refusals that depend only on the bytes (and the secret): the same bytes, the same answer.
_DETERMINISTIC = frozenset(
    {"not_json", "not_object", "bad_id", "bad_shape", "bad_signature", "no_secret"}
)
_NOT_OBJECT = Refusal("not_object", "request is not a JSON object")
SEEN_TTL_S = int(2 * TS_WINDOW_S) + 1
READ_ONLY = frozenset({"status", "tree"})  # may be answered right here, from a snapshot

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

    def count_refusal(self, reason: str, n: int = 1) -> None:
        with self.lock:
            self.refused[reason] = self.refused.get(reason, 0) + n
        self.metrics.refused.labels(reason).inc(n)


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

    def refused(self, r: Refusal, now: float | None = None, copies: int = 1) -> None:
        self.tick(now)
        if self.logged < self.per_s:
            self.logged += 1
            copies -= 1
            security.warning(
                "admin refused ({}): {} [id={} cmd={!r}]", r.reason, r.error, r.id, r.cmd
            )
        if copies:
            self.suppressed[r.reason] = self.suppressed.get(r.reason, 0) + copies

    def tick(self, now: float | None = None) -> None:
        """Close the window once it is a second old (also called when the channel is idle)."""
        now = self.clock.now() if now is None else now
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


def _copy_refusal(result: Request | Refusal) -> Refusal:
    """What the very same bytes get a second time: the same refusal if it depends only
    on the bytes (or the clock, as `stale_ts`); otherwise the id is spent: a replay."""
    if isinstance(result, Refusal) and (
        result.id is None or result.reason == "stale_ts" or result.reason in _DETERMINISTIC
    ):
        return result
    return Refusal(
        "replay", f"id {result.id} was already used (replay refused)", result.id, result.cmd
    )


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
        self.answers_here = READ_ONLY if answer is not None else frozenset()
        self.answer_if_new = client.register_script(ANSWER_IF_NEW)
        self.log = SecurityLog(clock)
        self.cache: dict[bytes | str, Refusal] = {}
        self.last_raw: bytes | str = b""
        self.last_refusal = _NOT_OBJECT
        self.counts: dict[str, int] = {}
        self.pending, self.flushed_at = 0, float("-inf")
        self.reply_window, self.replied, self.unanswered = clock.now(), 0, 0

    def __call__(self, raw: bytes | str) -> None:
        if raw == self.last_raw:  # a flood repeats itself: the same bytes, the same answer
            self.repeat(1)
            return
        result = self.judge(raw)
        # What a copy of these bytes will get (the subscriber coalesces copies: `repeat`).
        self.last_raw, self.last_refusal = raw, _copy_refusal(result)
        if isinstance(result, Request):
            self.flush_counts()  # a command (e.g. status) sees every refusal before it
            if result.cmd in self.answers_here:
                self.answer_here(result)
            else:
                self.deliver(result)
        else:
            self.refuse(result)

    def judge(self, raw: bytes | str) -> Request | Refusal:
        """The request, or why not: cheapest checks first, known junk by a lookup."""
        if len(raw) > MAX_BYTES:
            return Refusal("too_large", f"request larger than {MAX_BYTES} bytes")
        data = raw.encode() if isinstance(raw, str) else raw
        if data[:1] != b"{" and data.lstrip()[:1] != b"{":  # no request: refused unparsed
            return _NOT_OBJECT
        cached = self.cache.get(raw)
        if cached is not None:
            return cached
        result = check(raw, secret=self.secret, now=self.clock.now(), seen=self.state.seen)
        if (
            isinstance(result, Request)
            and result.cmd not in self.answers_here  # (checked with its answer: answer_here)
            and not self.first_use(result)
        ):
            result = replayed(result)
        if isinstance(result, Refusal) and result.reason in _DETERMINISTIC:
            if len(self.cache) >= REFUSED_CACHE:
                self.cache.clear()
            self.cache[raw] = result
        return result

    def not_requests(self, n: int) -> None:
        """`n` messages the subscriber saw were no JSON object (first byte not `{`)."""
        self.counts[_NOT_OBJECT.reason] = self.counts.get(_NOT_OBJECT.reason, 0) + n
        self.pending += n
        self.refuse(_NOT_OBJECT, counted=True, copies=n)

    def repeat(self, n: int) -> None:
        """`n` more copies of the message just handled (the subscriber coalesces them)."""
        r = self.last_refusal
        self.counts[r.reason] = self.counts.get(r.reason, 0) + n
        self.pending += n
        self.refuse(r, counted=True, copies=n)

    def idle(self) -> None:
        self.flush_counts()
        self.log.tick()

    def answer_here(self, req: Request) -> None:
        """A read-only command answered on this thread: the replay check and the reply
        in one Redis round trip. With no snapshot yet it goes the usual way."""
        text = self.answer(req) if self.answer is not None else None
        if text is None:
            if self.first_use(req):
                self.deliver(req)
            else:
                self.refuse(replayed(req))
            return
        key = f"{self.channel}:seen:{req.id}"
        try:
            sent = self.answer_if_new(
                keys=[key, reply_channel(self.channel, req.id)], args=[text, SEEN_TTL_S]
            )
        except redis.RedisError:
            self.state.metrics.redis_errors.inc()
            self.deliver(req)  # the in-memory check passed; the actor answers
            return
        if sent == -1:
            self.refuse(replayed(req))
        elif self.answered is not None:
            self.answered(req)

    def first_use(self, req: Request) -> bool:
        """Also remember the id in Redis, so a restarted process still refuses a replay."""
        key = f"{self.channel}:seen:{req.id}"
        try:
            return bool(self.client.set(key, b"1", nx=True, ex=SEEN_TTL_S))
        except redis.RedisError:
            self.state.metrics.redis_errors.inc()
            return True  # the in-memory check already passed

    def refuse(self, r: Refusal, *, counted: bool = False, copies: int = 1) -> None:
        if not counted:
            counts = self.counts
            counts[r.reason] = counts.get(r.reason, 0) + 1
            self.pending += 1
        now = self.clock.now()
        if self.pending >= FLUSH_EVERY or now - self.flushed_at >= FLUSH_S:
            self.flush_counts()
        self.log.refused(r, now, copies)
        if r.id is None:
            return
        if now - self.reply_window >= 1.0:
            self.reply_window, self.replied = now, 0
        if self.replied >= REPLIES_PER_S:
            self.unanswered += copies
            return
        self.unanswered += copies - 1  # copies of one request get one answer
        self.replied += 1
        body = {"id": r.id, "ok": False, "error": r.error}
        self.replies.put(reply_channel(self.channel, r.id), json.dumps(body))

    def flush_counts(self) -> None:
        """Hand the locally counted refusals to the run's counts and metrics."""
        if self.unanswered:  # refusals past REPLIES_PER_S: counted, not answered
            self.state.metrics.dropped.labels("refusal_reply").inc(self.unanswered)
            self.unanswered = 0
        if not self.pending:
            return
        counts, self.counts, self.pending = self.counts, {}, 0
        self.flushed_at = self.clock.now()
        for reason, n in counts.items():
            self.state.count_refusal(reason, n)


def replayed(req: Request) -> Refusal:
    return Refusal("replay", f"id {req.id} was already used (replay refused)", req.id, req.cmd)
