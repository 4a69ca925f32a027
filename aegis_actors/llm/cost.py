"""Token usage and estimated cost, per role and per (UTC) day, against a daily budget."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class CostMeter:
    """Adds up one role's tokens and cost for the current day; says once when the budget is spent.

    Prices are per 1,000 tokens, input and output apart (as the providers bill them).
    A budget of 0 means no limit.
    """

    def __init__(
        self,
        price_in_per_1k: float,
        price_out_per_1k: float,
        budget_usd: float = 0.0,
        budget_tokens: int = 0,
    ) -> None:
        self.price_in = price_in_per_1k
        self.price_out = price_out_per_1k
        self.budget_usd = budget_usd
        self.budget_tokens = budget_tokens
        self.day = ""
        self.usage = Usage()
        self.cost_usd = 0.0
        self.calls = 0
        self.spent_reported = False

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.price_in + usage.output_tokens * self.price_out) / 1000.0

    def add(self, usage: Usage, now: float) -> bool:
        """Count one reply; True exactly once per day, when this reply spends the budget."""
        day = day_of(now)
        if day != self.day:
            self.day, self.usage, self.cost_usd, self.calls = day, Usage(), 0.0, 0
            self.spent_reported = False
        self.usage = self.usage + usage
        self.cost_usd += self.cost(usage)
        self.calls += 1
        if self.spent_reported or not self.spent():
            return False
        self.spent_reported = True
        return True

    def spent(self) -> bool:
        by_cost = self.budget_usd > 0 and self.cost_usd >= self.budget_usd
        by_tokens = self.budget_tokens > 0 and self.usage.total >= self.budget_tokens
        return by_cost or by_tokens

    def summary(self) -> dict[str, float | int | str]:
        return {
            "day": self.day,
            "calls": self.calls,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "budget_usd": self.budget_usd,
            "budget_tokens": self.budget_tokens,
        }
