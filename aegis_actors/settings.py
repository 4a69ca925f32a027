"""Settings: `settings.toml` (or `--settings FILE`) overridden by `AEGIS_<SECTION>__<KEY>`.

Every section forbids unknown keys, so a typo is an error naming the key rather than a
silently ignored line. Secrets are `SecretStr` and are only ever read from the
environment; `redacted()` is what goes to logs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_FILE = "settings.toml"
DEFAULT_SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "SPY"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunSettings(Section):
    log_dir: str = "logs"
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    log_rotation: str = "50 MB"
    log_retention: int = Field(10, ge=1)


class FeedSettings(Section):
    kind: Literal["synthetic", "alpaca", "json", "replay"] = "synthetic"
    url: str = ""
    backup_url: str = ""
    symbols: list[str] = Field(default_factory=lambda: list(DEFAULT_SYMBOLS), min_length=1)
    vix_symbol: str = "VIX"
    tick_interval_s: float = Field(0.25, gt=0)
    seed: int = 7
    volatility: float = Field(0.002, ge=0)  # per-tick stdev of the synthetic random walk
    start_price: float = Field(100.0, gt=0)
    vix_start: float = Field(18.0, gt=0)
    key: SecretStr = SecretStr("")
    secret: SecretStr = SecretStr("")


class CalendarSettings(Section):
    file: str = ""  # JSON or CSV of releases
    url: str = ""


class NewsSettings(Section):
    url: str = ""
    file: str = ""  # JSON lines of headlines, read once per poll (for offline runs)
    poll_every_s: float = Field(30.0, gt=0)
    keywords: dict[str, list[str]] = Field(default_factory=dict)


class RoleSettings(Section):
    backend: Literal["rules", "llm"] = "rules"
    api: Literal["openai", "anthropic"] = "openai"
    model: str = "deepseek-chat"
    url: str = ""
    backup_url: str = ""
    timeout_s: float = Field(5.0, gt=0)
    api_key: SecretStr = SecretStr("")


def _verifier() -> RoleSettings:
    return RoleSettings(model="deepseek-reasoner", timeout_s=4.0)


def _commander() -> RoleSettings:
    return RoleSettings(api="anthropic", model="claude-opus-4-1", timeout_s=2.0)


class RolesSettings(Section):
    analyst: RoleSettings = Field(default_factory=RoleSettings)
    verifier: RoleSettings = Field(default_factory=_verifier)
    commander: RoleSettings = Field(default_factory=_commander)
    parallel_verification: bool = True
    max_consecutive_failures: int = Field(3, ge=1)


class BrokerSettings(Section):
    kind: Literal["paper", "alpaca"] = "paper"
    url: str = ""
    capital: float = Field(100_000.0, gt=0)
    slippage_bps: float = Field(5.0, ge=0)
    commission_per_share: float = Field(0.005, ge=0)
    min_commission: float = Field(1.0, ge=0)
    key_id: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    timeout_s: float = Field(2.0, gt=0)  # alpaca: per HTTP request
    retries: int = Field(2, ge=0)  # alpaca: extra attempts after 429/5xx/timeout
    retry_backoff_s: float = Field(0.1, ge=0)  # alpaca: wait before attempt n: n * this
    poll_every_s: float = Field(1.0, ge=0)  # alpaca: fill polling at most this often
    price_ttl_s: float = Field(5.0, gt=0)  # alpaca: a broker price older than this is unknown


class StoreSettings(Section):
    sqlite_path: str = "var/aegis.db"
    redis_url: str = ""
    postgres_dsn: str = ""
    save_every_s: float = Field(10.0, gt=0)
    session_s: float = Field(180.0, gt=0)


class PostureLevel(Section):
    entry_size: float = Field(gt=0, le=1)
    stop_loss: float = Field(lt=0, gt=-1)
    take_profit: float = Field(gt=0, lt=10)
    max_positions: int = Field(ge=1)
    limit_ratio: float = Field(ge=0, le=1)


class PostureSettings(Section):
    mode: Literal["auto", "offensive", "guerrilla", "defensive"] = "auto"
    evaluate_every_s: float = Field(1800.0, gt=0)
    vix_low: float = 15.0
    vix_high: float = 25.0
    hysteresis: float = Field(1.0, ge=0)
    stop_loss_streak: int = Field(3, ge=1)
    forced_cooldown_s: float = Field(3600.0, ge=0)  # a forced defensive holds at least this long
    offensive: PostureLevel = PostureLevel(
        entry_size=0.025, stop_loss=-0.015, take_profit=0.03, max_positions=5, limit_ratio=0.7
    )
    guerrilla: PostureLevel = PostureLevel(
        entry_size=0.02, stop_loss=-0.012, take_profit=0.024, max_positions=3, limit_ratio=0.9
    )
    defensive: PostureLevel = PostureLevel(
        entry_size=0.015, stop_loss=-0.008, take_profit=0.018, max_positions=2, limit_ratio=1.0
    )
    trend_symbol: str = "SPY"  # tie-breaker indicators near a bound are computed on it
    trend_window: int = Field(120, ge=3)  # prices the trend and volatility look back over
    trend_strong_pct: float = Field(0.5, gt=0)  # a move this large over the window is a trend
    vol_low_pct: float = Field(0.15, gt=0)  # per-print stdev (%) at or under this is calm
    vol_high_pct: float = Field(0.35, gt=0)  # ... at or over this is volatile


class RiskSettings(Section):
    max_orders_per_minute: int = Field(200, ge=1)
    daily_loss_limit_pct: float = Field(3.0, gt=0)
    minute_loss_limit_pct: float = Field(1.0, gt=0)
    position_warning_pct: float = Field(-2.0, lt=0)
    mismatch_ignore_pct: float = Field(0.5, ge=0)  # broker vs feed price under this: ignored
    mismatch_halt_pct: float = Field(2.0, gt=0)  # over this: halted + severe alert
    mismatch_confirm_ttl_s: float = Field(60.0, gt=0)  # a verifier confirmation lasts this long
    entry_ttl_s: float = Field(60.0, gt=0)  # an unfilled entry order is cancelled after this
    order_mix_window: int = Field(20, ge=1)  # orders the limit/market share is held over


class WatchdogSettings(Section):
    heartbeat_every_s: float = Field(5.0, gt=0)
    heartbeat_timeout_s: float = Field(2.0, gt=0)
    event_timeout_s: float = Field(10.0, gt=0)  # whole-cycle critical (SPEC 5.1)


class AdminSettings(Section):
    channel: str = "aegis:admin"
    events_channel: str = "aegis:events"


class DashboardSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)


Mode = Literal["normal", "limited", "safe", "halted", "shutdown"]


class SupervisionPolicy(Section):
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one"] = "one_for_one"
    max_restarts: int = Field(5, ge=0)
    within_s: float = Field(60.0, gt=0)
    backoff_initial_s: float = Field(0.1, ge=0)
    backoff_max_s: float = Field(5.0, ge=0)
    backoff_jitter: float = Field(0.1, ge=0, le=1)
    on_exhausted: Mode = "limited"


class SupervisionSettings(Section):
    root: SupervisionPolicy = SupervisionPolicy(max_restarts=10, within_s=60.0, on_exhausted="safe")
    roles: SupervisionPolicy = SupervisionPolicy(on_exhausted="limited")
    gateway: SupervisionPolicy = SupervisionPolicy(on_exhausted="safe")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AEGIS_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    run: RunSettings = Field(default_factory=RunSettings)
    feed: FeedSettings = Field(default_factory=FeedSettings)
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    news: NewsSettings = Field(default_factory=NewsSettings)
    roles: RolesSettings = Field(default_factory=RolesSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    posture: PostureSettings = Field(default_factory=PostureSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    watchdog: WatchdogSettings = Field(default_factory=WatchdogSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    supervision: SupervisionSettings = Field(default_factory=SupervisionSettings)
    # Short environment names the architecture promises (AEGIS_REDIS_URL, ...).
    redis_url: str = ""
    postgres_dsn: str = ""
    admin_secret: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _short_names(self) -> Settings:
        if self.redis_url and not self.store.redis_url:
            self.store.redis_url = self.redis_url
        if self.postgres_dsn and not self.store.postgres_dsn:
            self.store.postgres_dsn = self.postgres_dsn
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_toml_path))
        return tuple(sources)

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-able data with every secret masked (for logs and `status`)."""
        return self.model_dump(mode="json")  # SecretStr dumps as '**********'


class SettingsError(Exception):
    """Bad settings: the message is one line naming the key and the reason."""


_toml_path: Path | None = None


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load `path` (or ./settings.toml when present), then the environment, then `overrides`."""
    global _toml_path
    if path is None:
        candidate = Path(DEFAULT_FILE)
        file = candidate if candidate.is_file() else None
    else:
        file = Path(path)
        if not file.is_file():
            raise SettingsError(f"settings file {file}: not found")
    if file is not None:
        try:
            tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"settings file {file}: not valid TOML: {exc}") from None
    _toml_path = file
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
    finally:
        _toml_path = None


def describe(exc: ValidationError) -> str:
    """One line: the first bad key (dotted) and why."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "settings"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    value = err.get("input")
    shown = "" if "secret" in key or "key" in key.split(".")[-1] else f" (got {value!r})"
    if err["type"] == "extra_forbidden":
        return f"settings: unknown key {key}{more}"
    return f"settings: {key}: {err['msg']}{shown}{more}"
