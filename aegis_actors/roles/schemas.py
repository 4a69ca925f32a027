"""The JSON each role must answer with; an answer that does not validate gets one repair."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AnalysisAnswer(Answer):
    direction: Literal["up", "down", "flat"]
    expected_move_pct: float = Field(ge=-100.0, le=100.0)
    confidence: float = Field(ge=0.0, le=1.0)
    pattern: str = Field(max_length=200)
    risk_score: float = Field(ge=0.0, le=1.0)
    rationale: str = Field(max_length=2000)


class VerdictAnswer(Answer):
    verdict: Literal["approve", "veto"]
    reasons: list[str] = Field(min_length=1, max_length=20)
    confidence: float = Field(ge=0.0, le=1.0)


class DecisionAnswer(Answer):
    action: Literal["buy", "sell", "hold", "close"]
    size_fraction: float = Field(ge=0.0, le=1.0)  # of the posture's entry size
    order_type: Literal["limit", "market"] = "limit"
    limit_price: float | None = Field(None, gt=0)
    stop_loss: float | None = Field(None, gt=0)
    take_profit: float | None = Field(None, gt=0)
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = Field("", max_length=2000)


SCHEMAS: dict[str, type[Answer]] = {
    "analyst": AnalysisAnswer,
    "verifier": VerdictAnswer,
    "commander": DecisionAnswer,
}

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def extract_json(text: str) -> Any:
    """The JSON object in a model's text (tolerating a code fence); ValueError if none."""
    body = _FENCE.sub("", text.strip())
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("no JSON object in the answer") from None
        return json.loads(body[start : end + 1])
