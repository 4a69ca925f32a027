"""Which bars wake the tree: decision events from a strategy's signals, and the quiet bars
the tree may sleep through (nothing there can act, or only a mark inside the loss limits)."""

from __future__ import annotations

from typing import Any

from aegis_actors.backtest.bars import Bar
from aegis_actors.settings import Settings
from aegis_actors.strategies.roles import SignalBook


class Plan:
    """Which bars raise a decision event: every bar (the aegis rules), or a strategy's
    signal bars that can do something (a reversal is one decision: close and enter)."""

    def __init__(self, bars: list[Bar], signal: list[bool] | None = None) -> None:
        self.bars = bars
        self.signal = signal if signal is not None else [True] * len(bars)
        self.sign = [0] * len(bars)  # the strategy's signal, where it has one
        self.broker: Any = None  # set once the tree runs: moot signals are then skipped
        self.signal_exits = False
        self.short = True

    def event(self, i: int) -> bool:
        return self.signal[i] and not self.moot(i)

    def moot(self, i: int) -> bool:
        """A signal that can only end in a hold: with signal exits (no stop or target to
        move the position at this bar's open) and no order working on the symbol, the
        position is already on the signal's side, or flat on a sell a long-only strategy
        ignores."""
        broker, s = self.broker, self.sign[i]
        if broker is None or not self.signal_exits or not s:  # the aegis rules: every bar
            return False
        symbol = self.bars[i].symbol
        if any(o.symbol == symbol for o in broker.open_orders()):
            return False
        held = sum(p.qty for p in broker.positions() if p.symbol == symbol)
        if s > 0:
            return held > 0
        return held < 0 or (held == 0 and not self.short)

    def any_event(self, i: int, k: int) -> bool:
        return any(self.event(j) for j in range(i, k))


def event_plan(bars: list[Bar], book: SignalBook) -> Plan:
    by_symbol: dict[str, list[int]] = {}
    for i, b in enumerate(bars):
        by_symbol.setdefault(b.symbol, []).append(i)
    plan = Plan(bars, [False] * len(bars))
    plan.short = book.short
    for symbol, idx in by_symbol.items():
        sig = book.add(symbol, [bars[i].ts for i in idx], [bars[i].close for i in idx])
        for k, i in enumerate(idx):
            plan.signal[i] = bool(sig[k])
            plan.sign[i] = sig[k]
    return plan


class Quiet:
    """Which bars without a decision event may leave the tree asleep.

    Flat with no working order, such a bar cannot change anything. Holding with
    `--exits signal` (no reachable stop or target) and no working order, it only marks the
    position: the tree is woken once the equity has moved a quarter of the tightest loss
    limit since it last saw a price (so no risk limit is crossed unseen), otherwise the
    driver marks the equity itself, with the broker's formula. Housekeeping timers run
    when the tree is next woken, before any decision.
    """

    def __init__(self, broker: Any, settings: Settings, signal_exits: bool) -> None:
        self.broker = broker
        self.signal_exits = signal_exits
        r, w = settings.risk, settings.watchdog
        tight = min(r.minute_loss_limit_pct, r.daily_loss_limit_pct, w.capital_loss_halt_pct)
        self.band = tight / 4.0 / 100.0
        self.seen = 0.0  # the equity the tree last saw
        self.last: dict[str, float] = {}  # each symbol's latest close
        self.skipped = 0
        self.book: tuple[bool, list[tuple[str, float, float]], float] | None = None

    def state(self) -> tuple[bool, list[tuple[str, float, float]], float]:
        """The broker's book as the tree left it: working orders?, positions, cash. Only a
        woken tree changes it, so it is read once per woken bar, not once per quiet one."""
        if self.book is None:
            broker = self.broker
            positions = [(p.symbol, p.qty, p.avg_price) for p in broker.positions() if p.qty]
            self.book = (bool(broker.open_orders()), positions, float(broker.account().cash))
        return self.book

    def equity(self, bars: list[Bar]) -> float | None:
        """This bar time's equity when the tree may sleep through it, else None."""
        last = self.last
        for b in bars:
            last[b.symbol] = b.close
        working, positions, cash = self.state()
        if working:
            return None
        if not positions:
            self.skipped += 1
            return cash
        if not self.signal_exits:
            return None
        equity = cash + sum(qty * last.get(symbol, avg) for symbol, qty, avg in positions)
        if abs(equity - self.seen) >= self.band * self.seen:
            return None
        self.skipped += 1
        return equity

    def told(self, bars: list[Bar], equity: float) -> None:
        """The tree was woken for `bars` and saw `equity`: its book may have changed."""
        for b in bars:
            self.last[b.symbol] = b.close
        self.seen = equity
        self.book = None
