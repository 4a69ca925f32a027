"""The posture actor: how boldly to trade (SPEC 3).

Evaluated from the volatility index every 30 minutes with a hysteresis band so a VIX
hovering on a bound does not flap; an operator can override (and hand back to `auto`);
three stop-losses in a row, or three failed events, force defensive for a cool-down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.context import K_POSTURE, posture_params
from aegis_actors.messages import (
    Alert,
    AlertLevel,
    GetPosture,
    ModeChange,
    PositionClosed,
    Posture,
    PostureChange,
    PostureReply,
    SetPosture,
    VolatilityIndex,
)
from aegis_actors.runtime import STORE, WATCHDOG

ORDER = (Posture.OFFENSIVE, Posture.GUERRILLA, Posture.DEFENSIVE)


@dataclass(frozen=True)
class Indicators:
    """Tie-breakers near a VIX bound, from the benchmark's recent prints."""

    trend_pct: float | None = None  # move over the window, percent
    vol_pct: float | None = None  # stdev of print-to-print returns, percent


@dataclass(frozen=True)
class TieBreak:
    trend_strong_pct: float = 0.5
    vol_low_pct: float = 0.15
    vol_high_pct: float = 0.35


def indicators(prices: list[float]) -> Indicators:
    if len(prices) < 3 or min(prices) <= 0:
        return Indicators()
    returns = [b / a - 1.0 for a, b in zip(prices, prices[1:], strict=False)]
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return Indicators((prices[-1] / prices[0] - 1.0) * 100.0, math.sqrt(var) * 100.0)


def _vote(near: tuple[Posture, Posture], ind: Indicators, tb: TieBreak) -> Posture | None:
    """The indicators' choice between the two postures either side of a bound, or None
    when they are not clear (the gap between the votes is what stops flapping)."""
    if ind.trend_pct is None or ind.vol_pct is None:
        return None
    trend, vol = ind.trend_pct, ind.vol_pct
    vol_mid = (tb.vol_low_pct + tb.vol_high_pct) / 2
    if near == (Posture.OFFENSIVE, Posture.GUERRILLA):
        if trend >= tb.trend_strong_pct and vol <= tb.vol_low_pct:
            return Posture.OFFENSIVE  # strong trend, low volatility
        if trend <= tb.trend_strong_pct / 2 or vol >= vol_mid:
            return Posture.GUERRILLA
        return None
    if trend <= -tb.trend_strong_pct or vol >= tb.vol_high_pct:
        return Posture.DEFENSIVE  # falling market or high volatility
    if trend >= -tb.trend_strong_pct / 2 and vol <= vol_mid:
        return Posture.GUERRILLA
    return None


def evaluate(
    vix: float,
    current: Posture,
    low: float,
    high: float,
    band: float,
    ind: Indicators = Indicators(),
    tb: TieBreak = TieBreak(),
) -> tuple[Posture, str]:
    """The posture the VIX calls for, and why. Within `band` of a bound the trend and
    volatility indicators decide; when they are not clear the current posture holds
    (hysteresis), so a VIX hovering on a bound does not flap."""
    plain = (
        Posture.OFFENSIVE if vix < low else Posture.DEFENSIVE if vix > high else Posture.GUERRILLA
    )
    if abs(vix - low) < band:
        near, bound = (Posture.OFFENSIVE, Posture.GUERRILLA), low
    elif abs(vix - high) < band:
        near, bound = (Posture.GUERRILLA, Posture.DEFENSIVE), high
    else:
        return plain, f"VIX {vix:.2f}"
    vote = _vote(near, ind, tb)
    where = f"VIX {vix:.2f} near {bound:g}"
    if vote is not None:
        return vote, (f"{where}; trend {ind.trend_pct:+.2f}%, volatility {ind.vol_pct:.3f}% decide")
    if current in near:
        return current, f"{where}; indicators unclear, holding"
    return plain, f"{where}; indicators unclear"


@dataclass(frozen=True)
class _Evaluate:
    pass


class PostureActor(AegisActor):
    def on_start(self) -> None:
        cfg = self.settings.posture
        saved = self.rt.cache.get_json(K_POSTURE)
        self.override: Posture | None = None if cfg.mode == "auto" else Posture(cfg.mode)
        if saved and saved.get("override"):
            self.override = Posture(saved["override"])
        self.posture = self.override or (Posture(saved["posture"]) if saved else Posture.GUERRILLA)
        self.vix: float | None = None
        self.evaluated = False
        self.sl_streak = 0
        self.forced_until = float(saved.get("forced_until", 0.0)) if saved else 0.0
        self.unforced = Posture.GUERRILLA  # what a forced posture replaced
        self.changes = 0
        self.evaluations = 0
        self.indicators = Indicators()
        self.publish()
        self.after(cfg.evaluate_every_s, _Evaluate())

    def publish(self) -> None:
        self.rt.cache.set_json(
            K_POSTURE,
            {
                "posture": self.posture.value,
                "params": posture_params(self.settings, self.posture).model_dump(),
                "override": self.override.value if self.override else None,
                "forced_until": self.forced_until,
            },
        )

    def change(self, new: Posture, reason: str) -> None:
        if new == self.posture:
            return
        old, self.posture = self.posture, new
        self.changes += 1
        self.publish()
        now = self.clock.now()
        msg = PostureChange(
            old=old, new=new, reason=reason, ts=now, params=posture_params(self.settings, new)
        )
        self.log.info("posture {} -> {}: {}", old, new, reason)
        self.send(STORE, msg)
        self.rt.emit("posture", old=old.value, new=new.value, reason=reason)
        self.send(
            WATCHDOG,
            Alert(
                alert_id=f"posture-{int(now * 1000)}",
                level=AlertLevel.INFO,
                kind="posture_change",
                message=f"posture {old} -> {new}: {reason}",
                ts=now,
            ),
        )

    def on_VolatilityIndex(self, v: VolatilityIndex) -> None:
        self.vix = v.value
        if not self.evaluated:
            self.evaluate("first volatility reading")

    def on__Evaluate(self, _msg: _Evaluate) -> None:
        self.evaluate("scheduled evaluation")
        self.after(self.settings.posture.evaluate_every_s, _Evaluate())

    def evaluate(self, why: str) -> None:
        if self.vix is None:
            self.lift_forced()
            return
        self.evaluated = True
        self.evaluations += 1
        if self.override is not None or self.clock.now() < self.forced_until:
            return
        cfg = self.settings.posture
        prints = [p for _, p in self.rt.cache.prices(cfg.trend_symbol, cfg.trend_window)]
        self.indicators = indicators(prints)
        tb = TieBreak(cfg.trend_strong_pct, cfg.vol_low_pct, cfg.vol_high_pct)
        new, because = evaluate(
            self.vix, self.posture, cfg.vix_low, cfg.vix_high, cfg.hysteresis, self.indicators, tb
        )
        self.change(new, f"{why}: {because}")

    def lift_forced(self) -> None:
        """With no volatility reading to judge by, a forced posture whose cool-down has run
        out (on the clock: simulated in a backtest) goes back to the one it replaced."""
        if not self.forced_until or self.clock.now() < self.forced_until:
            return
        if self.override is not None:
            return
        self.forced_until = 0.0
        self.change(self.unforced, "forced posture expired (no volatility reading)")
        self.publish()

    def on_GetPosture(self, _msg: GetPosture) -> PostureReply:
        return PostureReply(posture=self.posture, override=self.override)

    def on_SetPosture(self, msg: SetPosture) -> PostureReply:
        if msg.operator:
            self.override = msg.posture
            if msg.posture is None:
                self.forced_until = 0.0
                self.publish()
                self.evaluate("back to auto")
            else:
                self.change(msg.posture, f"operator: {msg.reason}")
            self.publish()
        elif msg.posture is not None:
            if not self.forced_until:
                self.unforced = self.posture
            self.forced_until = self.clock.now() + self.settings.posture.forced_cooldown_s
            self.change(msg.posture, f"forced: {msg.reason}")
            self.publish()
        return PostureReply(posture=self.posture, override=self.override)

    def on_PositionClosed(self, msg: PositionClosed) -> None:
        if msg.reason != "stop_loss":
            self.sl_streak = 0
            return
        self.sl_streak += 1
        if self.sl_streak >= self.settings.posture.stop_loss_streak:
            self.sl_streak = 0
            self.on_SetPosture(
                SetPosture(
                    posture=Posture.DEFENSIVE,
                    reason=(f"{self.settings.posture.stop_loss_streak} consecutive stop-losses"),
                )
            )

    def on_ModeChange(self, _msg: ModeChange) -> None:
        """Postures do not change with the mode; the mode limits what any posture may do."""

    def status(self) -> dict[str, Any]:
        return {
            "posture": self.posture.value,
            "override": self.override.value if self.override else "auto",
            "vix": self.vix,
            "stop_loss_streak": self.sl_streak,
            "forced_until": self.forced_until or None,
            "changes": self.changes,
            "evaluations": self.evaluations,
            "trend_pct": self.indicators.trend_pct,
            "volatility_pct": self.indicators.vol_pct,
        }
