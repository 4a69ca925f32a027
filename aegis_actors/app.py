"""One running AEGIS: settings -> logs -> runtime -> supervision tree -> run -> clean stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from aegis_actors.brokers import Broker
from aegis_actors.cache_redis import make_cache
from aegis_actors.clock import Clock, WallClock, set_clock
from aegis_actors.context import K_MODE, K_POSTURE
from aegis_actors.gcpause import release, settle
from aegis_actors.logs import configure, flush
from aegis_actors.messages import GetStatus
from aegis_actors.runtime import EXECUTION, Runtime
from aegis_actors.settings import Settings
from aegis_actors.summary import summary_lines
from aegis_actors.tree import build, check_supported, event_sink, exhausted_to, make_broker
from supervisors import Directory, RootHandle, start_tree

log = logger.bind(actor="main")
STOP_TIMEOUT_S = 9.0
DRAIN_TIMEOUT_S = 5.0


class Aegis:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        stderr: bool = True,
        role_backends: dict[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        check_supported(settings)
        self.settings = settings
        self.clock = clock or WallClock()
        self.stderr = stderr
        self.resume = resume
        self.root: RootHandle | None = None
        self.rt: Runtime | None = None
        self.broker: Broker | None = None
        self.role_backends = role_backends or {}  # a backtest's strategy roles

    def start(self) -> Runtime:
        s = self.settings
        secrets = s.secret_values()
        configure(
            s.run.log_dir,
            level=s.run.log_level,
            json_level=s.run.json_log_level,
            rotation=s.run.log_rotation,
            retention=s.run.log_retention,
            secrets=secrets,
            stderr=self.stderr,
        )
        set_clock(self.clock)
        directory = Directory()
        rt = self.rt = Runtime(
            settings=s, clock=self.clock, directory=directory, resume=self.resume
        )
        rt.role_backends = dict(self.role_backends)
        rt.cache = make_cache(s, self.clock.now, lambda kind: rt.metrics.errors.labels(kind).inc())
        directory.on_dead_letter = lambda name, msg: rt.metrics.dead_letters.labels(name).inc()
        self.broker = make_broker(s, rt)
        children, policy = build(rt, self.broker)
        log.info(
            "AEGIS starting: run {} feed={} broker={} store={} roles={}",
            rt.run_id,
            s.feed.kind,
            s.broker.kind,
            "postgres" if s.store.postgres_dsn else "sqlite",
            s.roles.analyst.backend,
        )
        self.root = start_tree(
            "root",
            children,
            policy,
            clock=self.clock,
            directory=directory,
            on_exhausted=exhausted_to(rt, s.supervision.root.on_exhausted),
            on_event=event_sink(rt),
        )
        root = self.root
        rt.tree = lambda: root.snapshot(timeout=3.0)
        log.info("AEGIS running: {} actors", len(directory.names()))
        settle()  # no full-collection pause over what the start built (gcpause.py)
        self.settled = True
        self.started = time.monotonic()
        return rt

    def wait(self, for_s: float | None = None, asked: Callable[[], bool] = bool) -> str:
        """Block until `for_s` (wall) seconds pass, a shutdown is asked for (by the tree, or
        `asked()`: a signal's flag, checked every 0.2 s), or the tree ends."""
        assert self.root is not None and self.rt is not None
        deadline = None if for_s is None else time.monotonic() + for_s
        while True:
            if self.rt.shutdown.wait(0.2) or asked():
                self.rt.shutdown.set()
                return "shutdown requested"
            if self.root.wait(0):
                return "tree ended"
            if deadline is not None and time.monotonic() >= deadline:
                return f"--for {for_s:g}s elapsed"

    def stop(self, why: str = "stop") -> int:
        """Stop the tree in reverse order; 0 when clean, 1 when the tree had given up or the
        run ended in an automatic shutdown."""
        assert self.root is not None
        execution = self.execution_status()  # money and positions for the run summary
        t0 = time.monotonic()
        exhausted = self.root.exhausted
        if self.rt is not None:
            if self.rt.ended_by and not self.root.wait(0):
                self.drain_execution()  # the safe liquidation before shutdown goes out first
            self.rt.stopping.set()  # from here no order leaves (execution refuses them)
        if not self.root.wait(0):
            log.info("stopping ({}): children in reverse order", why)
            self.root.stop(timeout=STOP_TIMEOUT_S)
        took = time.monotonic() - t0
        ended_by = self.rt.ended_by if self.rt is not None else ""
        self.log_summary(execution)
        if exhausted:
            log.critical("AEGIS stopped: the root supervisor gave up ({:.1f}s)", took)
            code = 1
        elif ended_by:
            log.critical(
                "AEGIS stopped by an automatic shutdown ({}) in {:.1f}s; the next run starts safe",
                ended_by,
                took,
            )
            code = 1
        else:
            log.info("AEGIS stopped cleanly in {:.1f}s ({})", took, why)
            code = 0
        close = getattr(self.rt.cache, "close", None) if self.rt is not None else None
        if close is not None:  # the Redis pool, once every actor that used it has stopped
            close()
        if getattr(self, "settled", False):
            self.settled = False
            release()
        flush()
        return code

    def drain_execution(self) -> None:
        """Wait until execution has handled what it was told before now (an ask is answered
        after the tells queued ahead of it): an automatic shutdown passes through `safe`,
        whose liquidation must leave before "stopping" closes the door."""
        assert self.rt is not None
        try:
            self.rt.ask(EXECUTION, GetStatus(), DRAIN_TIMEOUT_S, dict)
        except Exception as exc:
            log.error("execution did not answer before the stop ({}): stopping anyway", exc)

    def execution_status(self) -> dict[str, Any]:
        """Money and positions just before the stop (empty if execution cannot answer)."""
        if self.rt is None:
            return {}
        try:
            answer: dict[str, Any] = self.rt.ask(EXECUTION, GetStatus(), 2.0, dict)
        except Exception:
            return {}
        return answer

    def log_summary(self, execution: dict[str, Any]) -> None:
        """The end of every run: a short summary on stderr (and in the JSON log)."""
        if self.rt is None:
            return
        posture = self.rt.cache.get_json(K_POSTURE) or {}
        for line in summary_lines(
            self.rt.metrics,
            time.monotonic() - getattr(self, "started", time.monotonic()),
            execution,
            self.rt.cache.get_json(K_MODE),
            posture.get("posture") if isinstance(posture, dict) else posture,
        ):
            log.info("{}", line)

    def status(self) -> dict[str, Any]:
        from aegis_actors.status import collect_status

        assert self.rt is not None
        return collect_status(self.rt)
