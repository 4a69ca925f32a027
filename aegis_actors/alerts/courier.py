"""The courier: one worker thread that delivers with retries, so no actor ever waits on a
network call. A full queue drops (and counts) rather than blocking the caller."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from loguru import logger

from aegis_actors.alerts.channels import Channel, Delivery, DeliveryError

log = logger.bind(actor="alerts")
Outcome = Callable[[Delivery, str, int], None]  # (delivery, sent|failed|dropped, attempts)


class Courier:
    def __init__(
        self,
        channels: dict[str, Channel],
        *,
        retries: int = 3,
        backoff_s: float = 2.0,
        queue_limit: int = 1000,
        on_outcome: Outcome | None = None,
    ) -> None:
        self.channels = channels
        self.retries = retries
        self.backoff_s = backoff_s
        self.on_outcome = on_outcome
        self._q: queue.Queue[Delivery | None] = queue.Queue(maxsize=queue_limit)
        self._stop = threading.Event()
        self.recent: deque[dict[str, Any]] = deque(maxlen=50)
        self.counts: dict[str, int] = {"sent": 0, "failed": 0, "dropped": 0}
        self._thread = threading.Thread(target=self._run, name="aegis-alerts", daemon=True)
        self._thread.start()

    def submit(self, d: Delivery) -> bool:
        """Queue one delivery; never blocks. False when the channel is off or the queue full."""
        if d.channel not in self.channels:
            return False
        try:
            self._q.put_nowait(d)
            return True
        except queue.Full:
            self._done(d, "dropped", 0)
            log.error("alert delivery queue full: {} to {} dropped", d.channel, d.target)
            return False

    def close(self, timeout: float = 2.0) -> None:
        """Stop after what is queued (bounded by `timeout`; pending retries are cut short)."""
        self._stop.set()
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            d = self._q.get()
            if d is None:
                return
            try:
                self._deliver(d)
            except Exception as exc:  # a bug never kills the thread (no traceback: no locals)
                log.error("alert delivery crashed: {}", type(exc).__name__)

    def _deliver(self, d: Delivery) -> None:
        channel = self.channels[d.channel]
        why = ""
        for attempt in range(1, self.retries + 2):
            try:
                channel.send(d)
                self._done(d, "sent", attempt)
                return
            except Exception as exc:  # any channel error is a failed attempt, never a crash
                why = str(exc) if isinstance(exc, DeliveryError) else type(exc).__name__
                log.bind(alert_id=d.alert_id).warning(
                    "alert {} via {} to {} failed (attempt {}/{}): {}",
                    d.alert_id,
                    d.channel,
                    d.target,
                    attempt,
                    self.retries + 1,
                    why,
                )
            if attempt <= self.retries and self._stop.wait(self.backoff_s * 2 ** (attempt - 1)):
                break
        self._done(d, "failed", attempt)
        log.bind(alert_id=d.alert_id).error(
            "alert {} via {} to {} NOT delivered: {}", d.alert_id, d.channel, d.target, why
        )

    def _done(self, d: Delivery, result: str, attempts: int) -> None:
        self.counts[result] += 1
        self.recent.append(
            {
                "alert_id": d.alert_id,
                "channel": d.channel,
                "target": d.target,
                "result": result,
                "attempts": attempts,
            }
        )
        if self.on_outcome is not None:
            try:
                self.on_outcome(d, result, attempts)
            except Exception:
                pass
