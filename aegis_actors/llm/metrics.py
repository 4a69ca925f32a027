"""LLM counters on the tree's registry (created once per registry, shared by the roles)."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class LlmMetrics:
    tokens: Counter
    cost: Counter


_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, LlmMetrics] = weakref.WeakKeyDictionary()


def llm_metrics(registry: CollectorRegistry) -> LlmMetrics:
    with _lock:
        found = _by_registry.get(registry)
        if found is None:
            found = _by_registry[registry] = LlmMetrics(
                tokens=Counter(
                    "aegis_llm_tokens_total",
                    "LLM tokens by role and kind",
                    ["role", "kind"],
                    registry=registry,
                ),
                cost=Counter(
                    "aegis_llm_cost_usd_total",
                    "Estimated LLM cost (USD) by role",
                    ["role"],
                    registry=registry,
                ),
            )
        return found
