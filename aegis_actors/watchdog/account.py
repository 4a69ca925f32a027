"""Money conditions the watchdog alerts on (SPEC 6.2), as plain code fed equity readings.

Each condition latches when it fires and re-arms once it has cleared (by half its
threshold), so a wobbling equity does not raise the same alarm on every reading.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from aegis_actors.messages import AlertLevel

DAY_S = 86_400.0


@dataclass(frozen=True)
class Trigger:
    level: AlertLevel
    kind: str
    message: str


class AccountWatch:
    def __init__(
        self,
        capital: float,
        *,
        minute_loss_pct: float,
        capital_loss_pct: float,
        daily_target_pct: float,
        target_ratio: float,
    ) -> None:
        self.capital = capital
        self.minute_loss_pct = minute_loss_pct
        self.capital_loss_pct = capital_loss_pct
        self.daily_target_pct = daily_target_pct
        self.target_ratio = target_ratio
        self.window: deque[tuple[float, float]] = deque()
        self.day: int | None = None
        self.day_start = capital
        self.latched: set[str] = set()
        self.last: dict[str, float] = {}

    def observe(self, equity: float, now: float) -> list[Trigger]:
        out: list[Trigger] = []
        day = int(now // DAY_S)
        if day != self.day:
            self.day, self.day_start = day, equity
            self.latched.discard("daily_target")
        self.window.append((now, equity))
        while self.window and self.window[0][0] < now - 60.0:
            self.window.popleft()
        peak = max(e for _, e in self.window)
        minute = (peak - equity) / self.capital * 100.0
        lost = (self.capital - equity) / self.capital * 100.0
        gain = (equity - self.day_start) / self.capital * 100.0
        self.last = {"minute_loss_pct": minute, "capital_loss_pct": lost, "day_gain_pct": gain}
        if self._edge("minute_loss", minute, self.minute_loss_pct):
            out.append(
                Trigger(
                    AlertLevel.CRITICAL,
                    "minute_loss",
                    f"down {minute:.2f}% of capital within a minute "
                    f"(limit {self.minute_loss_pct}%)",
                )
            )
        if self._edge("capital_loss", lost, self.capital_loss_pct):
            out.append(
                Trigger(
                    AlertLevel.SEVERE,
                    "capital_loss",
                    f"equity {equity:,.2f} is {lost:.2f}% under capital "
                    f"(limit {self.capital_loss_pct}%): halting",
                )
            )
        target = self.daily_target_pct * self.target_ratio
        if gain >= target and "daily_target" not in self.latched:
            self.latched.add("daily_target")
            out.append(
                Trigger(
                    AlertLevel.INFO,
                    "daily_target",
                    f"day's gain {gain:.2f}% reached {self.target_ratio:.0%} of the "
                    f"{self.daily_target_pct}% target",
                )
            )
        return out

    def _edge(self, key: str, value: float, limit: float) -> bool:
        if key in self.latched:
            if value < limit / 2:
                self.latched.discard(key)
            return False
        if value >= limit:
            self.latched.add(key)
            return True
        return False
