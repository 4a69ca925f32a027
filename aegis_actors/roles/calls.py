"""One role's calls: worker pool, attempts, retries, failover, repair, tiers, cost.

Everything that waits is judged on the actor's clock: the stage budget, the wait before
a retry (Retry-After), the slow-primary failover, the API outage tiers. A worker thread
only makes one HTTP attempt and tells the actor the outcome; an outcome that arrives
after its attempt was given up is ignored. So a test on a virtual clock decides when a
request "took too long", not how fast the machine is.

The API is judged only on its own time: each attempt notes when a worker actually sent
it, so time spent waiting for a worker in our pool never makes an endpoint "slow" (no
failover) nor counts toward its outage tiers. A call that ran out of budget before the
API had its fair share of it fails the event as our overload, not the API's; and the
pool's load (calls out or queued against its workers) is told to the gateway at its
high and low marks, so the gateway holds new events back rather than queue them here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka
from pydantic import ValidationError

from aegis_actors.llm.client import ChatClient, Reply
from aegis_actors.llm.cost import CostMeter, Usage
from aegis_actors.llm.errors import LlmError
from aegis_actors.llm.health import ApiHealth
from aegis_actors.llm.metrics import llm_metrics
from aegis_actors.messages import AlertLevel, RequestMode, RoleLoad, Stamped, TradingMode
from aegis_actors.roles import prompts
from aegis_actors.roles.backends import Backend, LlmBackend, RoleTask
from aegis_actors.roles.capacity import LoadMark, pending_limit, pool_workers
from aegis_actors.roles.schemas import extract_json
from aegis_actors.runtime import MARKET, WATCHDOG
from supervisors import Timer

if TYPE_CHECKING:
    from aegis_actors.base import AegisActor

BACKOFF_S = 0.25  # first retry wait when the server names none; doubles per retry


@dataclass(frozen=True)
class _Reply:
    key: str
    attempt: int
    reply: Reply | None
    error: LlmError | None


@dataclass(frozen=True)
class _Slow:
    key: str
    attempt: int


@dataclass(frozen=True)
class _Retry:
    key: str
    attempt: int


@dataclass(frozen=True)
class _Budget:
    key: str


@dataclass(frozen=True)
class _TierCheck:
    outage: int


@dataclass(eq=False)
class _Attempt:
    """One HTTP attempt; `sent_at` is set by the worker thread when it starts sending."""

    n: int
    client: ChatClient
    launched: float
    sent_at: float | None = None
    future: Future[Reply] | None = None

    def queued_s(self, now: float) -> float:
        """How long it waited for a worker in our own pool (so far, if still waiting)."""
        return (self.sent_at if self.sent_at is not None else now) - self.launched


class _Wire:
    """Attempts sent whose outcome the actor has not handled yet (begun by the worker)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.out = 0
        self.sent = 0

    def begin(self) -> None:
        with self.lock:
            self.out += 1
            self.sent += 1

    def end(self) -> None:
        with self.lock:
            self.out -= 1


@dataclass
class _Call:
    key: str
    task: RoleTask
    system: str
    messages: list[dict[str, str]]
    started: float
    deadline: float
    client: ChatClient | None = None
    attempt: int = 0
    attempts: list[_Attempt] = field(default_factory=list)
    retries: int = 0
    repaired: bool = False
    usage: Usage = field(default_factory=Usage)
    timers: list[Timer] = field(default_factory=list)


Answered = Callable[[RoleTask, Stamped], None]
Failed = Callable[[RoleTask, str, bool], None]  # task, reason, timed out


class RoleCalls:
    """Owned by one role actor and used only from its thread (workers only post back)."""

    def __init__(
        self,
        actor: AegisActor,
        role: str,
        backend: Backend,
        answered: Answered,
        failed: Failed,
    ) -> None:
        self.actor = actor
        self.role = role
        self.backend = backend
        self.answered = answered
        self.failed = failed
        self.cfg = getattr(actor.settings.roles, role)
        roles = actor.settings.roles
        self.health = ApiHealth(roles.limited_after_s, roles.safe_after_s)
        self.meter = CostMeter(
            self.cfg.price_in_per_1k,
            self.cfg.price_out_per_1k,
            self.cfg.daily_budget_usd,
            self.cfg.daily_budget_tokens,
        )
        self.calls: dict[str, _Call] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.workers = pool_workers(self.cfg, roles)
        self.max_pending = pending_limit(self.cfg, self.workers)
        # until answers come, assume the API takes half its budget
        self.load = LoadMark(self.workers, roles.events_per_s, self.cfg.timeout_s / 2)
        self.wire = _Wire()
        if isinstance(backend, LlmBackend):
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"llm-{role}")
        self.submitted = 0  # HTTP attempts handed to workers
        self.delivered = 0  # their outcomes handled here (on time or late)
        self.cancelled = 0  # attempts taken back before a worker sent them
        self.overloaded = 0  # calls failed by our own pool's queue, not by the API
        self.late = 0
        self.retries = 0
        self.repairs = 0
        self.failovers = 0

    # -- entry -------------------------------------------------------------------------

    def start(self, task: RoleTask) -> None:
        now = self.actor.clock.now()
        backend = self.backend
        if not isinstance(backend, LlmBackend):
            try:
                msg = backend.run(task, now)
            except Exception as exc:  # a rules bug fails the event, never the actor
                self.failed(task, f"rules backend: {exc}", False)
                return
            self.answered(task, msg)
            return
        key = task.event_id
        if key in self.calls:
            self.drop(self.calls[key])
        if len(self.calls) >= self.max_pending:
            self.overloaded += 1
            self.actor.metrics.errors.labels(f"{self.role}_overloaded").inc()
            self.failed(task, f"{len(self.calls)} calls in flight (max_pending)", False)
            return
        system, user = backend.prompt(task)
        call = _Call(
            key=key,
            task=task,
            system=system,
            messages=[{"role": "user", "content": user}],
            started=now,
            deadline=now + self.cfg.timeout_s,
        )
        self.calls[key] = call
        call.timers.append(self.actor.after(self.cfg.timeout_s, _Budget(key)))
        self.launch(call, backend.pool.pick(now))

    def launch(self, call: _Call, client: ChatClient) -> None:
        assert self.pool is not None and isinstance(self.backend, LlmBackend)
        now = self.actor.clock.now()
        call.attempt += 1
        call.client = client
        att = _Attempt(call.attempt, client, now)
        call.attempts.append(att)
        attempt, key = call.attempt, call.key
        ref = self.actor.actor_ref
        system, messages = call.system, list(call.messages)
        timeout = self.cfg.timeout_s
        clock, wire = self.actor.clock, self.wire

        def work() -> Reply:
            att.sent_at = clock.now()  # from here on the time is the API's
            wire.begin()  # ended when the actor has handled the outcome
            return client.complete(system, messages, timeout_s=timeout)

        def posted(fut: Future[Reply]) -> None:
            if fut.cancelled():
                return  # taken back before it was sent; the actor counted it
            exc = fut.exception()
            if exc is not None and not isinstance(exc, LlmError):
                exc = LlmError("network", f"{type(exc).__name__}: {exc}", endpoint="?")
            msg = _Reply(key, attempt, None if exc else fut.result(), exc)
            try:
                ref.tell(msg)
            except pykka.ActorDeadError:
                pass  # the role restarted; its successor does not know this call

        self.submitted += 1
        try:
            att.future = self.pool.submit(work)
        except RuntimeError:  # pool shut down while stopping
            self.submitted -= 1
            return
        att.future.add_done_callback(posted)
        self.track_load()
        if self.backend.pool.other(client) is not None:
            self.arm_slow(call, att, self.cfg.failover_after_s)

    def arm_slow(self, call: _Call, att: _Attempt, wait: float) -> None:
        now = self.actor.clock.now()
        wait = min(wait, max(0.0, call.deadline - now))
        call.timers.append(self.actor.after(wait, _Slow(call.key, att.n)))

    # -- outcomes ----------------------------------------------------------------------

    def on_reply(self, msg: _Reply) -> None:
        self.delivered += 1
        self.wire.end()
        self.track_load()
        call = self.calls.get(msg.key)
        if call is None or call.attempt != msg.attempt:
            self.late += 1
            self.actor.log.bind(event_id=msg.key).debug(
                "{} late answer ignored (attempt {})", self.role, msg.attempt
            )
            return
        if msg.error is not None:
            self.on_error(call, msg.error)
        else:
            assert msg.reply is not None
            att = call.attempts[-1]
            if att.sent_at is not None:
                self.load.answered(self.actor.clock.now() - att.sent_at)
            self.on_answer(call, msg.reply)

    def on_error(self, call: _Call, err: LlmError) -> None:
        now = self.actor.clock.now()
        log = self.actor.log.bind(event_id=call.key)
        self.actor.metrics.errors.labels(f"llm_{self.role}_{err.kind}").inc()
        log.warning("{} attempt {} failed: {}", self.role, call.attempt, err)
        assert isinstance(self.backend, LlmBackend) and call.client is not None
        pool = self.backend.pool
        if not err.retryable:
            self.fail(call, str(err), api=True)
            return
        other = pool.other(call.client)
        if other is not None:
            self.failover(call, other, f"{err.kind}")
            return
        if call.retries >= self.cfg.max_retries:
            self.fail(call, f"{err} (after {call.retries} retries)", api=True)
            return
        delay = err.retry_after_s if err.retry_after_s is not None else BACKOFF_S * 2**call.retries
        if now + delay >= call.deadline:
            self.fail(call, f"{err}; retry in {delay:g}s is past the stage budget", api=True)
            return
        call.retries += 1
        self.retries += 1
        call.timers.append(self.actor.after(delay, _Retry(call.key, call.attempt)))

    def failover(self, call: _Call, to: ChatClient, why: str) -> None:
        assert isinstance(self.backend, LlmBackend) and call.client is not None
        now = self.actor.clock.now()
        if self.backend.pool.failed(call.client, now):
            self.failovers += 1
            self.actor.log.warning(
                "{} primary endpoint {}: switching to the backup", self.role, why
            )
            self.actor.rt.emit("llm_failover", role=self.role, reason=why)
        self.launch(call, to)

    def on_slow(self, msg: _Slow) -> None:
        call = self.calls.get(msg.key)
        if call is None or call.attempt != msg.attempt or call.client is None:
            return
        assert isinstance(self.backend, LlmBackend)
        att = call.attempts[-1]
        # slow is judged from the moment it was sent: a wait for a worker is ours
        wire_s = self.actor.clock.now() - att.sent_at if att.sent_at is not None else 0.0
        if wire_s < self.cfg.failover_after_s - 1e-9:
            if self.actor.clock.now() < call.deadline:
                self.arm_slow(call, att, self.cfg.failover_after_s - wire_s)
            return
        other = self.backend.pool.other(call.client)
        if other is not None:
            self.failover(call, other, f"slow (no answer in {self.cfg.failover_after_s:g}s)")

    def on_retry(self, msg: _Retry) -> None:
        call = self.calls.get(msg.key)
        if call is not None and call.attempt == msg.attempt and call.client is not None:
            self.launch(call, call.client)

    def on_budget(self, msg: _Budget) -> None:
        call = self.calls.get(msg.key)
        if call is None:
            return
        now = self.actor.clock.now()
        queued = sum(a.queued_s(now) for a in call.attempts)
        api_s = max(0.0, now - call.started - queued)
        budget = f"no answer within {self.cfg.timeout_s:g}s"
        if api_s >= self.cfg.failover_after_s - 1e-9:  # the API had its fair share: slow
            self.fail(call, budget, api=True, timeout=True)
            return
        # our own pool ate the budget: the event fails, the API's tiers do not move
        self.overloaded += 1
        self.actor.metrics.errors.labels(f"{self.role}_overloaded").inc()
        self.fail(
            call,
            f"{budget}: {queued:.2f}s of it waiting for a worker in our own pool "
            f"({self.busy()} calls for {self.workers} workers), {api_s:.2f}s at the API",
            api=False,
            timeout=True,
        )

    def on_answer(self, call: _Call, reply: Reply) -> None:
        now = self.actor.clock.now()
        assert isinstance(self.backend, LlmBackend)
        self.health.success()
        call.usage = call.usage + reply.usage
        self.count_usage(reply, now)
        try:
            answer = self.backend.schema.model_validate(extract_json(reply.text))
        except (ValueError, ValidationError) as exc:
            problem = _one_line(exc)
            self.actor.metrics.errors.labels(f"llm_{self.role}_bad_answer").inc()
            if call.repaired:
                self.fail(call, f"answer invalid after one repair: {problem}", api=False)
                return
            self.actor.log.bind(event_id=call.key).warning(
                "{} answer invalid, asking once for a repair: {}", self.role, problem
            )
            call.repaired = True
            self.repairs += 1
            call.messages += [
                {"role": "assistant", "content": reply.text[:4000]},
                {"role": "user", "content": prompts.REPAIR.format(error=problem)},
            ]
            self.launch(call, call.client or self.backend.pool.pick(now))
            return
        meta = {
            "backend": "llm",
            "model": reply.model,
            "prompt_version": self.backend.prompt_version,
            "tokens_in": call.usage.input_tokens,
            "tokens_out": call.usage.output_tokens,
            "cost_usd": round(self.meter.cost(call.usage), 6),
            "attempts": call.attempt,
            "endpoint": reply.endpoint,
            "repaired": call.repaired,
            "call_s": round(now - call.started, 6),
        }
        try:
            msg = self.backend.to_message(call.task, answer, meta, now)
        except (ValueError, ValidationError) as exc:
            self.fail(call, f"answer unusable: {_one_line(exc)}", api=False)
            return
        self.drop(call)
        self.answered(call.task, msg)

    def fail(self, call: _Call, reason: str, *, api: bool, timeout: bool = False) -> None:
        self.drop(call)
        if api and self.health.failure(self.actor.clock.now()):
            outage = self.health.outage
            self.actor.after(self.health.limited_after_s, _TierCheck(outage))
            self.actor.after(self.health.safe_after_s, _TierCheck(outage))
        self.failed(call.task, reason, timeout)

    def drop(self, call: _Call) -> None:
        for t in call.timers:
            t.cancel()
        self.calls.pop(call.key, None)
        for att in call.attempts:  # one still waiting for a worker is never sent
            if att.future is not None and att.sent_at is None and att.future.cancel():
                self.cancelled += 1
                self.track_load()

    # -- load --------------------------------------------------------------------------

    def busy(self) -> int:
        """Attempts handed to the pool whose outcome is not back: on the wire or queued."""
        return self.submitted - self.delivered - self.cancelled

    def track_load(self) -> None:
        """Tell the gateway when the pool crosses its high or low mark (hysteresis)."""
        busy = self.busy()
        crossed = self.load.update(busy)
        if crossed is None:
            return
        cap = self.load.capacity
        if crossed:
            self.actor.metrics.errors.labels(f"{self.role}_saturated").inc()
        self.actor.send(
            MARKET,
            RoleLoad(
                role=self.role,
                saturated=crossed,
                in_flight=busy,
                capacity=cap,
                ts=self.actor.clock.now(),
            ),
        )

    # -- tiers and cost ----------------------------------------------------------------

    def on_tier(self, msg: _TierCheck) -> None:
        now = self.actor.clock.now()
        tier = self.health.check(msg.outage, now)
        if tier is None:
            return
        down = now - (self.health.down_since or now)
        target = TradingMode.SAFE if tier == "safe" else TradingMode.LIMITED
        level = AlertLevel.CRITICAL if tier == "safe" else AlertLevel.WARNING
        text = f"{self.role} LLM API failing for {down:.0f}s: trading mode -> {tier}"
        self.actor.log.error(text)
        self.alert(level, "llm_api", text)
        self.actor.send(WATCHDOG, RequestMode(target=target, reason=text))

    def count_usage(self, reply: Reply, now: float) -> None:
        lm = llm_metrics(self.actor.metrics.registry)
        lm.tokens.labels(self.role, "input").inc(reply.usage.input_tokens)
        lm.tokens.labels(self.role, "output").inc(reply.usage.output_tokens)
        lm.cost.labels(self.role).inc(self.meter.cost(reply.usage))
        if self.meter.add(reply.usage, now):
            text = (
                f"{self.role} daily LLM budget spent (${self.meter.cost_usd:.2f}, "
                f"{self.meter.usage.total} tokens): trading mode -> limited"
            )
            self.actor.log.error(text)
            self.alert(AlertLevel.WARNING, "llm_budget", text)
            self.actor.send(WATCHDOG, RequestMode(target=TradingMode.LIMITED, reason=text))

    def alert(self, level: AlertLevel, kind: str, text: str) -> None:
        self.actor.alert(level, kind, text)

    # -- lifecycle ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        on_wire = self.wire.out
        out: dict[str, Any] = {
            "in_flight": len(self.calls),
            "http_out": on_wire,
            "queued": max(0, self.busy() - on_wire),
            "workers": self.workers,
            "capacity": self.load.capacity,
            "latency_s": round(self.load.latency_s, 3),
            "saturated": self.load.saturated,
            "saturations": self.load.times,
            "overloaded": self.overloaded,
        }
        if isinstance(self.backend, LlmBackend):
            pool = self.backend.pool
            out.update(
                prompt_version=self.backend.prompt_version,
                endpoint="backup" if pool.on_backup_since is not None else "primary",
                failovers=self.failovers,
                repairs=self.repairs,
                late=self.late,
                retries=self.retries,
                api_down_since=self.health.down_since,
                usage=self.meter.summary(),
            )
        return out

    def close(self) -> None:
        for call in list(self.calls.values()):
            self.drop(call)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.backend.close()


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        first = errs[0]
        loc = ".".join(str(p) for p in first["loc"]) or "answer"
        return f"{loc}: {first['msg']}" + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else "")
    return " ".join(str(exc).split())[:200]
