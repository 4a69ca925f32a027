"""How one run's end decides the next run's starting mode (ARCHITECTURE "Trading modes").

`shutdown` ends one run and never blocks the next: the mode itself is not carried over.
What is carried over, durably, is how the last run ended: a run that ended in an
automatic shutdown makes the next one start `safe` (one line says why and how to leave
it), unless that next run is started with `--resume`. Within one run (an actor restart)
the mode is kept as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aegis_actors.messages import TradingMode

KV_LAST_RUN = "last_run"  # durable: {"run_id", "started_at", "ended", "reason"}
K_MODE_RUN = "mode_run"  # cache: the run whose mode K_MODE holds
AUTOMATIC_SHUTDOWN = "automatic shutdown"
HOW_TO_LEAVE = "`admin mode --set normal` or `run --resume` leaves it"


@dataclass(frozen=True)
class StartMode:
    mode: TradingMode
    why: str = ""  # the one line to log, "" when there is nothing to say


def start_mode(last: Any, *, resume: bool) -> StartMode:
    """The mode a new run starts in, from the record of the previous run."""
    if not isinstance(last, dict) or last.get("ended") != AUTOMATIC_SHUTDOWN:
        return StartMode(TradingMode.NORMAL)
    reason = last.get("reason") or "no reason recorded"
    run = last.get("run_id") or "?"
    if resume:
        return StartMode(
            TradingMode.NORMAL,
            f"previous run {run} ended in an automatic shutdown ({reason}); "
            "--resume given: starting normal",
        )
    return StartMode(
        TradingMode.SAFE,
        f"previous run {run} ended in an automatic shutdown ({reason}): starting in safe; "
        f"{HOW_TO_LEAVE}",
    )


def run_started(run_id: str, now: float) -> dict[str, Any]:
    return {"run_id": run_id, "started_at": now, "ended": "", "reason": ""}


def run_ended_automatically(run_id: str, now: float, reason: str) -> dict[str, Any]:
    return {"run_id": run_id, "ended_at": now, "ended": AUTOMATIC_SHUTDOWN, "reason": reason}
