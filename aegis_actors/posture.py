"""The posture actor: how boldly to trade (SPEC 3).

Evaluated from the volatility index every 30 minutes with a hysteresis band so a VIX
hovering on a bound does not flap; an operator can override (and hand back to `auto`);
three stop-losses in a row, or three failed events, force defensive for a cool-down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.context import K_POSTURE, posture_params
from aegis_actors.messages import (
    Alert,
    AlertLevel,
    ModeChange,
    PositionClosed,
    Posture,
    PostureChange,
    SetPosture,
    VolatilityIndex,
)
from aegis_actors.runtime import STORE, WATCHDOG


def evaluate(vix: float, current: Posture, low: float, high: float, band: float) -> Posture:
    """The posture the VIX calls for; crossing a bound takes `band` beyond it."""
    if vix < low:
        target = Posture.OFFENSIVE
    elif vix > high:
        target = Posture.DEFENSIVE
    else:
        target = Posture.GUERRILLA
    if target == current:
        return current
    order = [Posture.OFFENSIVE, Posture.GUERRILLA, Posture.DEFENSIVE]
    if abs(order.index(target) - order.index(current)) > 1:
        return target  # a jump over a whole band is no flap
    bound = low if Posture.OFFENSIVE in (target, current) else high
    return target if abs(vix - bound) >= band else current


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
        self.changes = 0
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
            return
        self.evaluated = True
        if self.override is not None or self.clock.now() < self.forced_until:
            return
        cfg = self.settings.posture
        new = evaluate(self.vix, self.posture, cfg.vix_low, cfg.vix_high, cfg.hysteresis)
        self.change(new, f"{why}: VIX {self.vix:.2f}")

    def on_SetPosture(self, msg: SetPosture) -> dict[str, Any]:
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
            self.forced_until = self.clock.now() + self.settings.posture.forced_cooldown_s
            self.change(msg.posture, f"forced: {msg.reason}")
            self.publish()
        return {
            "posture": self.posture.value,
            "override": self.override.value if self.override else "auto",
        }

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
        }
