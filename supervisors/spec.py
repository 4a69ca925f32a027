"""Declarative tree configuration: what to start, when to restart, how fast to give up."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pykka

    from supervisors.context import ChildContext

__all__ = ["Backoff", "ChildSpec", "Policy", "Restart", "Strategy"]


class Restart(StrEnum):
    """When a child is restarted: always, only after a failure, or never."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(StrEnum):
    """Which siblings are restarted along with a failed child."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True)
class Backoff:
    """Exponential, jittered delay so a crashing child does not spin the CPU."""

    initial_s: float = 0.1
    max_s: float = 5.0
    jitter: float = 0.1
    factor: float = 2.0

    def base(self, n: int) -> float:
        """Un-jittered delay for the n-th (1-based) consecutive restart."""
        try:
            grown = self.initial_s * self.factor ** max(0, n - 1)
        except OverflowError:
            grown = math.inf
        return min(self.max_s, grown)

    def delay(self, n: int, rng: random.Random) -> float:
        """Jittered delay; pass a seeded `rng` for reproducible tests."""
        base = self.base(n)
        if base <= 0:
            return 0.0
        return max(0.0, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))


@dataclass(frozen=True)
class Policy:
    """Strategy plus restart intensity: over `max_restarts` within `within_s` means give up."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within_s: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True)
class ChildSpec:
    """How to (re)start one child; `factory` must start it and return its ref."""

    name: str
    factory: Callable[[ChildContext], pykka.ActorRef[Any]]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"child name must be non-empty and contain no '/': {self.name!r}")
