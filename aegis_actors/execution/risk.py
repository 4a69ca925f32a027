"""Pre-trade risk: the one place every order passes before it leaves (SPEC 3, 5.2).

Pure bookkeeping on the clock's timestamps, so every limit is unit-tested without
actors. A refusal names the check that refused it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass

from aegis_actors.messages import Order, OrderType, PostureParams, TradingMode
from aegis_actors.settings import RiskSettings

MINUTE = 60.0
DAY = 86_400.0


def client_order_id(decision_id: str, intent: str) -> str:
    """Deterministic: the same decision can never yield two ids."""
    return "ae-" + hashlib.sha256(f"{decision_id}|{intent}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Refusal:
    check: str
    why: str


class OrderMix:
    """Holds the posture's limit/market share over a rolling window, deterministically."""

    def __init__(self, window: int = 20) -> None:
        self.recent: deque[OrderType] = deque(maxlen=window)

    def choose(self, limit_ratio: float) -> OrderType:
        if limit_ratio >= 1.0:
            return OrderType.LIMIT
        if limit_ratio <= 0.0:
            return OrderType.MARKET
        kept = list(self.recent)
        if self.recent.maxlen is not None and len(kept) >= self.recent.maxlen:
            kept = kept[1:]  # the oldest leaves the window when the next one comes in
        n = len(kept) + 1
        limits = sum(1 for t in kept if t is OrderType.LIMIT)
        # The type that leaves the window's limit share closest to the target; ties: limit.
        if abs((limits + 1) / n - limit_ratio) <= abs(limits / n - limit_ratio):
            return OrderType.LIMIT
        return OrderType.MARKET

    def record(self, order_type: OrderType) -> None:
        self.recent.append(order_type)


class PreTradeRisk:
    def __init__(self, cfg: RiskSettings, equity: float, now: float) -> None:
        self.cfg = cfg
        self.sent: deque[float] = deque()
        self.equity_marks: deque[tuple[float, float]] = deque()
        self.day_start = now
        self.day_equity = equity
        self.refused: dict[str, int] = {}
        # precheck's refusals, made once per (mode, open, allowed): most spine decisions
        # are refused there, each with the same words (a Refusal is immutable)
        self._prechecked: dict[tuple[TradingMode, int, int], Refusal] = {}

    def mark_equity(self, equity: float, now: float) -> None:
        if now - self.day_start >= DAY:
            self.day_start, self.day_equity = now, equity
        # A monotonic queue: only marks that can still be the minute's peak are kept, so
        # the peak is the head and marking stays O(1) at any order rate.
        while self.equity_marks and self.equity_marks[-1][1] <= equity:
            self.equity_marks.pop()
        self.equity_marks.append((now, equity))
        while self.equity_marks and now - self.equity_marks[0][0] > MINUTE:
            self.equity_marks.popleft()

    def daily_loss_pct(self, equity: float) -> float:
        return max(0.0, (self.day_equity - equity) / self.day_equity * 100.0)

    def minute_loss_pct(self, equity: float) -> float:
        if not self.equity_marks:
            return 0.0
        peak = self.equity_marks[0][1]
        return max(0.0, (peak - equity) / peak * 100.0)

    def check(
        self,
        order: Order,
        *,
        mode: TradingMode,
        params: PostureParams,
        price: float,
        equity: float,
        open_positions: int,
        now: float,
    ) -> Refusal | None:
        entry = order.intent == "entry"
        r = self._check(order, entry, mode, params, price, equity, open_positions, now)
        if r is not None:
            self.refused[r.check] = self.refused.get(r.check, 0) + 1
        return r

    def precheck(
        self, *, mode: TradingMode, params: PostureParams, open_positions: int
    ) -> Refusal | None:
        """The entry checks that need no order, price or account: run first, so a
        refused decision costs no broker call and no order built (same refusals)."""
        allowed = params.max_positions
        if mode.allows_entries() and open_positions < allowed:
            return None
        key = (mode, open_positions, allowed)
        r = self._prechecked.get(key)
        if r is None:
            if not mode.allows_entries():
                r = Refusal("mode", f"mode {mode} allows no new entries")
            else:
                r = Refusal("max_positions", f"{open_positions} open, posture allows {allowed}")
            if len(self._prechecked) >= 256:
                self._prechecked.clear()
            self._prechecked[key] = r
        self.refused[r.check] = self.refused.get(r.check, 0) + 1
        return r

    def _check(
        self,
        order: Order,
        entry: bool,
        mode: TradingMode,
        params: PostureParams,
        price: float,
        equity: float,
        open_positions: int,
        now: float,
    ) -> Refusal | None:
        if entry and not mode.allows_entries():
            return Refusal("mode", f"mode {mode} allows no new entries")
        if not entry and not mode.allows_exits():
            return Refusal("mode", f"mode {mode} allows no orders")
        if order.qty <= 0:
            return Refusal("size", "quantity must be positive")
        if entry:
            limit = params.entry_size * equity
            notional = order.qty * price
            if notional > limit * (1 + 1e-9):
                return Refusal("size", f"notional {notional:.2f} over entry size {limit:.2f}")
            if open_positions >= params.max_positions:
                return Refusal(
                    "max_positions", f"{open_positions} open, posture allows {params.max_positions}"
                )
            daily = self.daily_loss_pct(equity)
            if daily >= self.cfg.daily_loss_limit_pct:
                return Refusal("daily_loss", f"down {daily:.2f}% today")
            minute = self.minute_loss_pct(equity)
            if minute >= self.cfg.minute_loss_limit_pct:
                return Refusal("minute_loss", f"down {minute:.2f}% in the last minute")
        while self.sent and now - self.sent[0] >= MINUTE:
            self.sent.popleft()
        if len(self.sent) >= self.cfg.max_orders_per_minute:
            return Refusal("rate", f"{len(self.sent)} orders in the last minute")
        return None

    def record_sent(self, now: float) -> None:
        self.sent.append(now)
