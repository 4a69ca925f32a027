"""Versioned prompt templates (aegis_actors/prompts/<role>.v<N>.txt) filled from the context.

The version is the file name, stored on every decision row, so an answer can always be
traced to the exact words that asked for it. Templates use `$name` placeholders so the
JSON examples inside them need no escaping.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from aegis_actors.messages import Analysis, Context, Verdict
from aegis_actors.roles import rules

PROMPT_DIR = Path(__file__).resolve().parent.parent / "prompts"
_NAME = re.compile(r"^(?P<role>[a-z]+)\.v(?P<n>\d+)\.txt$")
RECENT = 30


@dataclass(frozen=True)
class PromptTemplate:
    version: str  # e.g. "analyst.v1"
    system: str
    user: Template

    def fill(self, values: dict[str, Any]) -> tuple[str, str]:
        return self.system, self.user.substitute(values)


def latest(role: str, directory: Path = PROMPT_DIR) -> PromptTemplate:
    """The highest-numbered template for `role`."""
    found = [
        (int(m["n"]), p)
        for p in directory.glob(f"{role}.v*.txt")
        if (m := _NAME.match(p.name)) and m["role"] == role
    ]
    if not found:
        raise FileNotFoundError(f"no prompt template for {role} in {directory}")
    _, path = max(found)
    return parse(path)


def parse(path: Path) -> PromptTemplate:
    text = path.read_text(encoding="utf-8")
    if "[system]" not in text or "[user]" not in text:
        raise ValueError(f"{path.name}: needs a [system] and a [user] section")
    system = text.split("[system]", 1)[1].split("[user]", 1)[0].strip()
    user = text.split("[user]", 1)[1].strip()
    return PromptTemplate(
        version=path.name.removesuffix(".txt"), system=system, user=Template(user)
    )


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def values(
    ctx: Context, analysis: Analysis | None = None, verdict: Verdict | None = None
) -> dict[str, Any]:
    """Everything a template may name, from the injected context."""
    recent = ctx.prices[-RECENT:]
    view = lambda m, *drop: _compact(m.model_dump(mode="json", exclude={"stamps", "meta", *drop}))  # noqa: E731
    return {
        "symbol": ctx.symbol,
        "event_kind": ctx.event.kind.value,
        "headline": ctx.event.headline or "none",
        "price": rules.price_of(ctx),
        "prices": ", ".join(f"{p:.4f}" for p in recent),
        "n_prices": len(recent),
        "indicators": _compact(rules.shown(rules.of(ctx))) if ctx.prices else "{}",
        "price_age_s": f"{ctx.price_age_s:.1f}" if ctx.price_age_s is not None else "unknown",
        "stale": str(ctx.stale).lower(),
        "position": view(ctx.position) if ctx.position else "none",
        "posture": ctx.posture.value,
        "params": _compact(ctx.params.model_dump(mode="json")),
        "mode": ctx.mode.value,
        "open_positions": ctx.open_positions,
        "capital": round(ctx.capital, 2),
        "analysis": view(analysis, "event_id") if analysis else "none (check independently)",
        "verdict": view(verdict, "event_id") if verdict else "none",
    }


REPAIR = (
    "Your answer could not be used: {error}. Reply again with only the corrected JSON "
    "object, with exactly the keys asked for."
)
