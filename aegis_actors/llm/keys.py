"""API keys: only from the environment (settings' SecretStr is itself env-fed), never logged."""

from __future__ import annotations

import os

from pydantic import SecretStr

# The provider-wide variables the architecture promises, by wire format.
FALLBACK_ENV = {"openai": "DEEPSEEK_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def api_key(configured: SecretStr, api: str) -> str:
    """The role's own key (AEGIS_ROLES__<ROLE>__API_KEY) or the provider-wide one."""
    key = configured.get_secret_value()
    if key:
        return key
    return os.environ.get(FALLBACK_ENV.get(api, ""), "")


def fallback_secrets() -> list[str]:
    """Provider-wide keys present in the environment (for the log redaction filter)."""
    return [v for name in FALLBACK_ENV.values() if (v := os.environ.get(name, ""))]
