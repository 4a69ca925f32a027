"""LLM clients over plain `requests`: OpenAI-compatible chat completions and Anthropic
Messages, endpoint failover, API health tiers and token cost accounting."""

from aegis_actors.llm.client import ChatClient, Endpoint, Reply, make_client
from aegis_actors.llm.cost import CostMeter, Usage
from aegis_actors.llm.errors import LlmError
from aegis_actors.llm.failover import EndpointPool
from aegis_actors.llm.health import ApiHealth

__all__ = [
    "ApiHealth",
    "ChatClient",
    "CostMeter",
    "Endpoint",
    "EndpointPool",
    "LlmError",
    "Reply",
    "Usage",
    "make_client",
]
