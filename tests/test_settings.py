"""Settings: the file, the environment, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis_actors.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_settings_toml_documents_exactly_the_defaults(aegis_env: Path) -> None:
    assert load_settings(ROOT / "settings.toml").model_dump() == Settings().model_dump()


def test_environment_overrides_nested_keys(
    aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_ROLES__ANALYST__TIMEOUT_S", "3.5")
    monkeypatch.setenv("AEGIS_FEED__SYMBOLS", '["AAPL","SPY"]')
    monkeypatch.setenv("AEGIS_SUPERVISION__ROLES__MAX_RESTARTS", "9")
    s = load_settings()
    assert s.roles.analyst.timeout_s == 3.5
    assert s.feed.symbols == ["AAPL", "SPY"]
    assert s.supervision.roles.max_restarts == 9


def test_short_names_for_redis_and_postgres(
    aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("AEGIS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1/x")
    s = load_settings()
    assert s.store.redis_url == "redis://127.0.0.1:6379/0"
    assert s.store.postgres_dsn == "postgresql://postgres@127.0.0.1/x"


def test_environment_beats_the_file(aegis_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (aegis_env / "settings.toml").write_text("[broker]\ncapital = 5000.0\n")
    assert load_settings().broker.capital == 5000.0
    monkeypatch.setenv("AEGIS_BROKER__CAPITAL", "7000")
    assert load_settings().broker.capital == 7000.0


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[feed]\nnope = 1\n", "settings: unknown key feed.nope"),
        ("[posture.offensive]\nstop_loss = 0.5\n", "settings: posture.offensive.stop_loss:"),
        ('[supervision.roles]\nstrategy = "random"\n', "settings: supervision.roles.strategy:"),
        ("[dashboard]\nport = 70000\n", "settings: dashboard.port:"),
        ("[feed\n", "not valid TOML"),
    ],
)
def test_bad_file_is_one_line_naming_the_key(aegis_env: Path, toml: str, expected: str) -> None:
    f = aegis_env / "bad.toml"
    f.write_text(toml)
    with pytest.raises(SettingsError) as err:
        load_settings(f)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_secrets_come_from_the_environment_and_are_masked(
    aegis_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEGIS_ADMIN_SECRET", "hunter2-admin")
    monkeypatch.setenv("AEGIS_BROKER__SECRET_KEY", "hunter2-broker")
    s = load_settings()
    assert s.admin_secret.get_secret_value() == "hunter2-admin"
    dumped = str(s.redacted())
    assert "hunter2" not in dumped and "**" in dumped


def test_a_partial_sub_table_keeps_its_own_defaults(aegis_env: Path) -> None:
    f = aegis_env / "s.toml"
    f.write_text(
        "[posture.offensive]\nstop_loss = -0.02\n"
        '[roles.verifier]\nurl = "http://127.0.0.1:9"\n'
        "[supervision.root]\nmax_restarts = 3\n"
    )
    s = load_settings(f)
    assert s.posture.offensive.stop_loss == -0.02
    assert s.posture.offensive.entry_size == 0.025  # offensive's own default, not another's
    assert s.roles.verifier.model == "deepseek-reasoner"
    assert s.roles.verifier.timeout_s == 4.0
    assert s.supervision.root.on_exhausted == "safe"
