"""Role settings: partial overrides keep each role's own defaults; llm needs an endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis_actors.settings import SettingsError, load_settings
from aegis_actors.tree import check_supported


def test_partial_commander_override_keeps_its_defaults(
    aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_ROLES__COMMANDER__BACKEND", "llm")
    monkeypatch.setenv("AEGIS_ROLES__COMMANDER__URL", "https://api.anthropic.com")
    s = load_settings(None, roles={"verifier": {"timeout_s": 3.0}})
    c = s.roles.commander
    assert (c.backend, c.api, c.model, c.price_out_per_1k) == (
        "llm",
        "anthropic",
        "claude-opus-4-1",
        0.075,
    )
    assert (s.roles.verifier.model, s.roles.verifier.timeout_s) == ("deepseek-reasoner", 3.0)
    check_supported(s)


def test_llm_backend_without_url_is_refused(aegis_env: Path) -> None:
    s = load_settings(None, roles={"analyst": {"backend": "llm"}})
    with pytest.raises(SettingsError, match=r"roles\.analyst\.url"):
        check_supported(s)


def test_failover_deadline_cannot_exceed_five_seconds(aegis_env: Path) -> None:
    with pytest.raises(SettingsError, match="failover_after_s"):
        load_settings(None, roles={"analyst": {"failover_after_s": 6.0}})
