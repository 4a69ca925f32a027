"""The gate every order passes before it leaves: pre-trade risk, then the data-mismatch
tiers (SPEC 4.3, 5.2). Pure decisions; the core acts on the typed answer (halting,
holding for the verifier), so the rules are tested without actors."""

from __future__ import annotations

from dataclasses import dataclass

from aegis_actors.execution.mismatch import MismatchGuard, Tier
from aegis_actors.execution.results import OrderDenied
from aegis_actors.execution.risk import OrderMix, PreTradeRisk
from aegis_actors.messages import Order, Posture, PostureParams, TradingMode
from aegis_actors.settings import RiskSettings


@dataclass(frozen=True)
class Cleared:
    """Every check passed: the order may be written ahead and sent."""


@dataclass(frozen=True)
class HoldForVerifier:
    """Broker and feed prices differ enough that the verifier must confirm first."""


@dataclass(frozen=True)
class MismatchHalt:
    """Broker and feed prices differ past the halt line: trading stops."""

    symbol: str
    broker_price: float
    feed_price: float


Verdict = Cleared | OrderDenied | HoldForVerifier | MismatchHalt


class Gate:
    def __init__(self, cfg: RiskSettings, equity: float, now: float) -> None:
        self.risk = PreTradeRisk(cfg, equity, now)
        self.guard = MismatchGuard(
            cfg.mismatch_ignore_pct, cfg.mismatch_halt_pct, cfg.mismatch_confirm_ttl_s
        )
        self.mix: dict[Posture, OrderMix] = {p: OrderMix(cfg.order_mix_window) for p in Posture}

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
        broker_price: float | None,
        feed_price: float | None,
        liquidation: bool = False,
    ) -> Verdict:
        refusal = self.risk.check(
            order,
            mode=mode,
            params=params,
            price=price,
            equity=equity,
            open_positions=open_positions,
            now=now,
        )
        if refusal is not None:
            return OrderDenied(refusal.check, refusal.why)
        tier = self.mismatch(order.symbol, broker_price, feed_price)
        if tier is Tier.HALT:
            assert broker_price is not None and feed_price is not None
            return MismatchHalt(order.symbol, broker_price, feed_price)
        if tier is Tier.CONFIRM and not (liquidation or self.guard.is_confirmed(order.symbol, now)):
            return HoldForVerifier()  # a liquidation never waits: its price is the market
        return Cleared()

    def mismatch(self, symbol: str, broker_price: float | None, feed_price: float | None) -> Tier:
        return self.guard.assess(symbol, broker_price, feed_price)

    def record_entry(self, order: Order) -> None:
        """The order type mix counts entries actually sent."""
        if order.intent == "entry" and order.posture is not None:
            self.mix[order.posture].record(order.order_type)
