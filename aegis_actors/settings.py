"""Settings: `settings.toml` (or `--settings FILE`) overridden by `AEGIS_<SECTION>__<KEY>`.

Every section forbids unknown keys, so a typo is an error naming the key rather than a
silently ignored line. Secrets are `SecretStr` and are only ever read from the
environment; `redacted()` is what goes to logs.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aegis_actors.redact import redact_text, url_passwords

DEFAULT_FILE = "settings.toml"
DEFAULT_SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "SPY"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        """A partial sub-table (`[posture.offensive] stop_loss = -0.02`) overrides only the
        keys it names; the rest keep that sub-table's own defaults, not the class's."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            given = out.get(name)
            if not isinstance(given, dict):
                continue
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                out[name] = {**default.model_dump(), **given}
        return out


class RunSettings(Section):
    log_dir: str = "logs"
    archive_dir: str = ""  # close-day archives the day's logs here ("" = <log_dir>/archive)
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    # DEBUG (or TRACE) here also writes the per-event lines (costly at high event rates)
    json_log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
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
    subscribe_quotes: bool = False  # alpaca: quotes (mid price) besides trades
    subscribe_bars: bool = False  # alpaca: minute bars besides trades
    reconnect_initial_s: float = Field(0.1, ge=0)
    reconnect_max_s: float = Field(1.0, ge=0)
    reconnect_jitter: float = Field(0.2, ge=0, le=1)
    connect_timeout_s: float = Field(3.0, gt=0)
    ping_every_s: float = Field(5.0, gt=0)
    ping_timeout_s: float = Field(3.0, gt=0)
    stale_after_s: float = Field(3.0, gt=0)  # SPEC 4.2 network tiers, from when data stops
    safe_after_s: float = Field(10.0, gt=0)
    shutdown_after_s: float = Field(30.0, gt=0)
    liveness_check_s: float = Field(0.5, gt=0)
    batch_max: int = Field(100, ge=1)  # frames decoded per mailbox turn
    max_inflight: int = Field(128, ge=1)  # events in the pipeline at once (backpressure)
    max_wait_s: float = Field(0.05, gt=0)  # a tick waiting longer for the window is shed
    # under load (events less than this apart) admitted events wait up to this long for
    # others and enter the pipeline as one batch (each stage handles it in one mailbox
    # turn); after a quiet spell an event goes at once; 0 = always at once
    dispatch_linger_ms: float = Field(5.0, ge=0, le=50)
    replay_file: str = ""  # replay: the bar CSV (set by `backtest --data`)

    @field_validator("symbols")
    @classmethod
    def _symbols_distinct(cls, symbols: list[str]) -> list[str]:
        for sym in symbols:
            if not sym.strip():
                raise ValueError("an empty symbol is not a symbol")
        dupes = sorted(s for s, n in Counter(symbols).items() if n > 1)  # one pass
        if dupes:
            raise ValueError(f"duplicate symbol(s) {dupes}")
        return symbols

    @model_validator(mode="after")
    def _tiers_climb(self) -> FeedSettings:
        if not self.stale_after_s < self.safe_after_s < self.shutdown_after_s:
            raise ValueError("stale_after_s < safe_after_s < shutdown_after_s must hold")
        return self


class CalendarSettings(Section):
    file: str = ""  # JSON or CSV of releases
    url: str = ""
    catch_up_s: float = Field(300.0, ge=0)  # releases missed while down, fired once at start


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
    failover_after_s: float = Field(2.5, gt=0, le=5.0)  # a primary this slow hands to the backup
    retry_primary_s: float = Field(60.0, ge=0)  # back to the primary after this long on backup
    max_retries: int = Field(2, ge=0)  # 429/5xx retries per call, within the stage budget
    # HTTP worker threads; 0 = roles.events_per_s x the longest role timeout_s (Little's law:
    # at that rate no call ever waits in our own pool, whatever the API's latency in budget)
    workers: int = Field(0, ge=0, le=1024)
    max_pending: int = Field(0, ge=0)  # calls beyond this fail at once; 0 = 2 x workers
    max_tokens: int = Field(512, ge=16)
    temperature: float = Field(0.0, ge=0, le=2)
    price_in_per_1k: float = Field(0.00027, ge=0)  # USD per 1,000 input tokens
    price_out_per_1k: float = Field(0.0011, ge=0)  # USD per 1,000 output tokens
    daily_budget_usd: float = Field(25.0, ge=0)  # 0 = no limit; spent -> limited + alert
    daily_budget_tokens: int = Field(0, ge=0)  # 0 = no limit


def _verifier() -> RoleSettings:
    return RoleSettings(
        model="deepseek-reasoner",
        timeout_s=4.0,
        failover_after_s=2.0,
        price_in_per_1k=0.00055,
        price_out_per_1k=0.00219,
    )


def _commander() -> RoleSettings:
    return RoleSettings(
        api="anthropic",
        model="claude-opus-4-1",
        timeout_s=2.0,
        failover_after_s=1.0,
        price_in_per_1k=0.015,
        price_out_per_1k=0.075,
        daily_budget_usd=100.0,
    )


class RolesSettings(Section):
    analyst: RoleSettings = Field(default_factory=RoleSettings)
    verifier: RoleSettings = Field(default_factory=_verifier)
    commander: RoleSettings = Field(default_factory=_commander)
    parallel_verification: bool = True
    max_consecutive_failures: int = Field(3, ge=1)
    limited_after_s: float = Field(30.0, gt=0)  # API failing this long -> limited + alert
    safe_after_s: float = Field(300.0, gt=0)  # API failing this long -> safe
    events_per_s: float = Field(50.0, gt=0)  # SPEC 5.2: the rate the LLM pools are sized for

    @model_validator(mode="before")
    @classmethod
    def _role_defaults(cls, data: Any) -> Any:
        """A partial table (or env override) for the verifier or commander keeps that role's
        own defaults (model, api, prices) instead of falling back to the analyst's."""
        if isinstance(data, dict):
            for name, factory in (("verifier", _verifier), ("commander", _commander)):
                given = data.get(name)
                if isinstance(given, dict):
                    data = {**data, name: {**factory().model_dump(exclude_unset=True), **given}}
        return data


class BrokerSettings(Section):
    kind: Literal["paper", "alpaca"] = "paper"
    url: str = ""
    capital: float = Field(100_000.0, gt=0)
    slippage_bps: float = Field(5.0, ge=0)
    commission_per_share: float = Field(0.005, ge=0)
    min_commission: float = Field(1.0, ge=0)
    key_id: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    paper_state_path: str = "var/paper.json"  # "" = in-memory book, for throwaway runs
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
    redis_prefix: str = "aegis:"
    redis_backoff_initial_s: float = Field(0.5, gt=0)
    redis_backoff_max_s: float = Field(30.0, gt=0)
    spool_path: str = "var/spool.db"
    spool_max: int = Field(100_000, ge=1)
    retry_initial_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(5.0, gt=0)
    connect_timeout_s: int = Field(3, ge=1)
    io_timeout_s: float = Field(10.0, gt=0)  # PostgreSQL silent this long: an outage
    # SQLite commits: "full" fsyncs every order's write-ahead (live runs: the only choice);
    # "normal" does not (WAL: safe against a crash of the process) — a replay's ledger is
    # an output a rerun makes again, and no real broker sees its orders.
    sqlite_synchronous: Literal["full", "normal"] = "full"
    # SQLite transactions per commit: 1 commits every write-ahead on its own (live runs:
    # the only choice); a replay groups them (each still all-or-nothing, as a savepoint)
    # and commits every N and at stop — its orders reach no real broker.
    sqlite_commit_every: int = Field(1, ge=1)


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
    heartbeat_misses: int = Field(2, ge=1)  # missed beats in a row before a restart
    capital_loss_halt_pct: float = Field(5.0, gt=0)  # severe: halted (SPEC 6.2)
    daily_target_pct: float = Field(1.0, gt=0)  # the day's profit target, % of capital
    daily_target_alert_ratio: float = Field(0.8, gt=0, le=1)  # info alert at this share
    account_every_s: float = Field(1.0, gt=0)  # how often equity is checked for losses
    accuracy_horizon_s: float = Field(300.0, gt=0)  # a call is judged this long after
    accuracy_days: int = Field(7, ge=1)  # moving-average window (SPEC 5.3)
    accuracy_flat_band_pct: float = Field(0.05, ge=0)  # |move| under this counts as flat
    accuracy_min_samples: int = Field(20, ge=1)  # judged calls/orders before a rate is judged
    target_analysis: float = Field(0.65, ge=0, le=1)  # SPEC 5.3 prediction accuracy
    target_veto: float = Field(0.80, ge=0, le=1)  # SPEC 5.3 veto hit rate
    target_execution: float = Field(0.995, ge=0, le=1)  # SPEC 5.3 execution success
    latency_log_every_s: float = Field(600.0, gt=0)  # SPEC 7: latency summary
    pnl_log_every_s: float = Field(1800.0, gt=0)  # SPEC 7: PnL
    success_log_every_s: float = Field(3600.0, gt=0)  # SPEC 7: success rates
    anomaly_every_s: float = Field(60.0, gt=0)  # tick-rate sample period
    anomaly_z: float = Field(4.0, gt=0)  # |z| at or over this is an anomaly (warning)
    anomaly_min_samples: int = Field(30, ge=3)  # history needed before judging
    anomaly_window: int = Field(500, ge=10)  # samples kept per series


class Contact(Section):
    name: str
    email: str = ""
    phone: str = ""


AlertLevelName = Literal["info", "warning", "critical", "severe"]


def _slack_channels() -> dict[str, str]:
    return {"info": "#alerts", "warning": "#urgent", "critical": "#urgent", "severe": "#urgent"}


class AlertsSettings(Section):
    slack_url: SecretStr = SecretStr("")  # incoming webhook URL: a secret, environment only
    slack_channels: dict[str, str] = Field(default_factory=_slack_channels)
    smtp_host: str = ""
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "aegis@localhost"
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    sms_url: str = ""
    phone_url: str = ""
    webhook_token: SecretStr = SecretStr("")
    timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0)
    retry_backoff_s: float = Field(2.0, ge=0)
    queue_limit: int = Field(1000, ge=1)
    dedup_window_s: float = Field(300.0, ge=0)
    severe_sms_repeat: int = Field(3, ge=1)
    escalate_from: AlertLevelName = "warning"
    escalation_after_s: list[float] = Field(
        default_factory=lambda: [300.0, 600.0, 900.0], min_length=3, max_length=3
    )
    first: list[Contact] = Field(default_factory=list)
    second: list[Contact] = Field(default_factory=list)
    third: list[Contact] = Field(default_factory=list)


class AdminSettings(Section):
    channel: str = "aegis:admin"
    events_channel: str = "aegis:events"
    snapshot_every_s: float = Field(1.0, gt=0)  # status/tree snapshot age at most (and on events)


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
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    # Short environment names the architecture promises (AEGIS_REDIS_URL, ...).
    redis_url: str = ""
    postgres_dsn: str = ""
    admin_secret: SecretStr = SecretStr("")
    _file: Path | None = PrivateAttr(default=None)  # where it was read from (admin `reload`)

    @property
    def source_file(self) -> Path | None:
        return self._file

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
        sources: list[PydanticBaseSettingsSource] = [init_settings, _Environment(settings_cls)]
        if _toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_toml_path))
        return tuple(sources)

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-able data with every secret masked (for logs and `status`):
        SecretStr dumps as '**********', and passwords inside URLs/DSNs become '***'."""
        from aegis_actors.redact import redact

        return dict(redact(self.model_dump(mode="json")))

    def secret_values(self) -> list[str]:
        """Every secret this process knows (settings secrets, URL/DSN passwords, provider
        keys), for the log scrubber: none of them may reach a sink."""
        from aegis_actors.llm.keys import fallback_secrets

        out = [v.get_secret_value() for _path, v in _secret_leaves(self)]
        for url in (self.store.redis_url, self.store.postgres_dsn, self.redis_url):
            out += url_passwords(url)
        for url in (self.alerts.sms_url, self.alerts.phone_url, self.roles.analyst.url):
            out += url_passwords(url)
        return [v for v in dict.fromkeys(out + fallback_secrets()) if v]


class SettingsError(Exception):
    """Bad settings: the message is one line naming the key and the reason."""


_toml_path: Path | None = None
ENV_PREFIX = "AEGIS_"
# Variables of the test harness (tests/conftest.py), not of the application.
ENV_IGNORED = ("AEGIS_TEST_",)


def env_name(path: str) -> str:
    """`feed.key` -> `AEGIS_FEED__KEY` (`admin_secret` -> `AEGIS_ADMIN_SECRET`)."""
    return ENV_PREFIX + path.replace(".", "__").upper()


def _submodel(annotation: Any) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Every leaf setting of `model` (dotted path -> annotation)."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        sub = _submodel(field.annotation)
        if sub is not None:
            out.update(_field_paths(sub, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = field.annotation
    return out


def secret_paths() -> list[str]:
    """Dotted names of every secret setting (environment only)."""
    return [p for p, ann in _field_paths(Settings).items() if ann is SecretStr]


def _secret_leaves(settings: Settings) -> list[tuple[str, SecretStr]]:
    out = []
    for path in secret_paths():
        target: Any = settings
        for part in path.split("."):
            target = getattr(target, part)
        out.append((path, target))
    return out


def _resolve(path: list[str]) -> Any:
    """The annotation at `path` below Settings; KeyError when no such setting."""
    model: type[BaseModel] = Settings
    for i, part in enumerate(path):
        field = model.model_fields[part]  # KeyError: unknown
        sub = _submodel(field.annotation)
        if i == len(path) - 1:
            return field.annotation
        if sub is not None:
            model = sub
        elif get_origin(field.annotation) is dict and i == len(path) - 2:
            return Any  # one entry of a mapping, e.g. AEGIS_ALERTS__SLACK_CHANNELS__INFO
        else:
            raise KeyError(part)
    return Settings


def _env_value(name: str, raw: str, annotation: Any) -> Any:
    """Decode one variable: JSON for lists/mappings/tables, and a comma-separated list is
    accepted where a list is expected (`AEGIS_FEED__SYMBOLS=AAPL,MSFT`)."""
    origin = get_origin(annotation)
    if origin is list:
        text = raw.strip()
        if not text.startswith("["):
            return [p.strip() for p in text.split(",")] if text else []
    elif origin is not dict and _submodel(annotation) is None:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        want = "a JSON list or a comma-separated list" if origin is list else "a JSON object"
        raise SettingsError(f"settings: {name}: not valid JSON (expected {want})") from None


def _nearest_env(name: str) -> str:
    known = [env_name(p) for p in _field_paths(Settings)]
    close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.88)
    return f"; did you mean {close[0]}?" if close else ""


def environment_values(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Every `AEGIS_*` variable as nested settings data; one that maps to no setting is
    an error (a typo must not run with the default silently)."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(ENV_IGNORED):
            continue
        path = upper[len(ENV_PREFIX) :].lower().split("__")
        try:
            annotation = _resolve(path)
        except KeyError:
            raise SettingsError(
                f"settings: unknown key {'.'.join(path)} (environment variable {name})"
                f"{_nearest_env(name)}"
            ) from None
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _env_value(name, raw, annotation)
    return out


class _Environment(PydanticBaseSettingsSource):
    """`AEGIS_<SECTION>__<KEY>` variables, strictly (see `environment_values`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return environment_values()


def _secrets_in_file(data: dict[str, Any], file: Path) -> None:
    """Secrets come only from the environment: one in the file stops the start."""
    for path in secret_paths():
        node: Any = data
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise SettingsError(
                f"settings: {path} in {file}: secrets come only from the environment; "
                f"remove it from the file and set {env_name(path)}"
            )


def vet(settings: Settings) -> None:
    """Checks across keys that the models cannot express one by one."""
    for path, value in _secret_leaves(settings):
        text = value.get_secret_value()
        if not (text.isascii() and text.isprintable()):
            raise SettingsError(
                f"settings: {path} ({env_name(path)}): contains non-ASCII or control "
                "characters; a secret must be printable ASCII"
            )
    f, b = settings.feed, settings.broker
    if f.kind == "alpaca" and not (f.key.get_secret_value() and f.secret.get_secret_value()):
        raise SettingsError(
            "settings: feed.kind 'alpaca' needs its key and secret: set "
            "AEGIS_FEED__KEY and AEGIS_FEED__SECRET"
        )
    if b.kind == "alpaca" and not (b.key_id.get_secret_value() and b.secret_key.get_secret_value()):
        raise SettingsError(
            "settings: broker.kind 'alpaca' needs its keys: set "
            "AEGIS_BROKER__KEY_ID and AEGIS_BROKER__SECRET_KEY"
        )


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
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"settings file {file}: not valid TOML: {exc}") from None
        _secrets_in_file(data, file)
    _toml_path = file
    try:
        settings = Settings(**overrides)
        settings._file = file
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
    finally:
        _toml_path = None
    vet(settings)
    return settings


def _shown(loc: list[str], value: Any) -> str:
    """` (got X)` for a plain value of a non-secret key; nothing otherwise (a value that
    is a whole table may hold secrets, and a secret's value is never printed)."""
    try:
        annotation = _resolve(loc)
    except KeyError:
        return ""
    if annotation is SecretStr or _submodel(annotation) is not None:
        return ""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, list) and all(isinstance(v, scalar) for v in value):
        pass
    elif not isinstance(value, scalar):
        return ""
    return f" (got {redact_text(repr(value))})"


def describe(exc: ValidationError) -> str:
    """One line: the first bad key (dotted) and why; never a secret's value."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "settings"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if err["type"] == "extra_forbidden":
        return f"settings: unknown key {key}{more}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"settings: {key}: {msg}{_shown(loc, err.get('input'))}{more}"


def check_writable(settings: Settings) -> None:
    """The files a run writes must be writable before anything starts (otherwise the
    store would crash-loop on them): one line naming the key, at start."""
    wanted = [("run.log_dir", Path(settings.run.log_dir) / ".write-test", True)]
    if not settings.store.postgres_dsn:
        wanted.append(("store.sqlite_path", Path(settings.store.sqlite_path), False))
    wanted.append(("store.spool_path", Path(settings.store.spool_path), False))
    for key, path, probe in wanted:
        try:
            for up in (path.parent, *path.parent.parents):
                if up.exists() and not up.is_dir():
                    raise NotADirectoryError(20, f"{up} is not a directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab"):
                pass
            if probe:
                path.unlink()
        except OSError as exc:
            raise SettingsError(
                f"settings: {key}: cannot write {path} ({exc.strerror or type(exc).__name__})"
            ) from None
