"""The AEGIS supervision tree (ARCHITECTURE.md "The tree"), built from settings.

Start order is top to bottom, stop order the reverse: the store is up before anyone
writes and down after everyone has; the gateway starts last (after admin and the
dashboard too), so no event enters a pipeline that is not there yet, and stops first.
"""

from __future__ import annotations

from typing import Any

from loguru import logger

from aegis_actors.admin.actor import Admin
from aegis_actors.base import AegisActor
from aegis_actors.brokers import Broker, PaperBroker
from aegis_actors.brokers.alpaca import AlpacaBroker
from aegis_actors.brokers.durable_paper import DurablePaperBroker
from aegis_actors.context import ContextLoader
from aegis_actors.dashboard import Dashboard
from aegis_actors.execution.actor import Execution
from aegis_actors.gateway.calendar import Calendar
from aegis_actors.gateway.market import MarketFeed
from aegis_actors.gateway.news import News
from aegis_actors.messages import RequestMode, SupervisorEvent, TradingMode
from aegis_actors.posture import PostureActor
from aegis_actors.roles.actors import Analyst, Commander, Verifier
from aegis_actors.runtime import (
    ADMIN,
    ANALYST,
    CALENDAR,
    COMMANDER,
    CONTEXT,
    DASHBOARD,
    EXECUTION,
    GATEWAY,
    MARKET,
    NEWS,
    POSTURE,
    ROLES,
    STORE,
    TOPIC_DECISIONS,
    TOPIC_MODE,
    VERIFIER,
    WATCHDOG,
    Runtime,
)
from aegis_actors.settings import Settings, SettingsError, SupervisionPolicy
from aegis_actors.store.actor import Store
from aegis_actors.watchdog.actor import Watchdog
from supervisors import Backoff, ChildContext, ChildSpec, Policy, Strategy, supervisor_spec

log = logger.bind(actor="tree")


def policy(p: SupervisionPolicy) -> Policy:
    return Policy(
        strategy=Strategy(p.strategy),
        max_restarts=p.max_restarts,
        within_s=p.within_s,
        backoff=Backoff(
            initial_s=p.backoff_initial_s, max_s=p.backoff_max_s, jitter=p.backoff_jitter
        ),
    )


def make_broker(settings: Settings, rt: Runtime) -> Broker:
    b = settings.broker
    if b.kind == "alpaca":
        key, secret = b.key_id.get_secret_value(), b.secret_key.get_secret_value()
        if not b.url:
            raise SettingsError("settings: broker.url: the alpaca broker needs its REST base URL")
        if not key or not secret:
            raise SettingsError(
                "settings: broker.key_id / broker.secret_key: set AEGIS_BROKER__KEY_ID and "
                "AEGIS_BROKER__SECRET_KEY in the environment for the alpaca broker"
            )
        return AlpacaBroker(
            b.url,
            key,
            secret,
            timeout_s=b.timeout_s,
            retries=b.retries,
            retry_backoff_s=b.retry_backoff_s,
            poll_every_s=b.poll_every_s,
            price_ttl_s=b.price_ttl_s,
            clock_now=rt.clock.now,
        )
    replay = settings.feed.kind == "replay"
    paper = PaperBroker(
        capital=b.capital,
        slippage_bps=b.slippage_bps,
        commission_per_share=b.commission_per_share,
        min_commission=b.min_commission,
        bar_mode=replay,  # a backtest never fills on its own bar
        clock_now=rt.clock.now,
        # Ids unique forever: a fresh book per run must not reuse the last run's order and
        # fill ids (a durable book keeps the prefix it was created with). A backtest keeps
        # plain sequential ids so replaying a session gives the same ones.
        id_prefix="paper" if replay else f"paper-{rt.run_id}",
    )
    if b.paper_state_path and not replay:  # durable by default, like a real broker's book
        return DurablePaperBroker(paper, b.paper_state_path)
    return paper


def check_supported(settings: Settings) -> None:
    """Refuse, as bad settings, what this build cannot run yet (rather than run a stub)."""
    for role in ("analyst", "verifier", "commander"):
        cfg = getattr(settings.roles, role)
        if cfg.backend == "llm" and not cfg.url:
            raise SettingsError(
                f"settings: roles.{role}.url: empty, but backend 'llm' needs an endpoint URL"
            )
    feed = settings.feed
    if settings.store.sqlite_synchronous != "full" and feed.kind != "replay":
        raise SettingsError(
            "settings: store.sqlite_synchronous: 'normal' is for a replay only; a live run "
            "fsyncs every order's write-ahead ('full')"
        )
    if settings.store.sqlite_commit_every != 1 and feed.kind != "replay":
        raise SettingsError(
            "settings: store.sqlite_commit_every: grouped commits are for a replay only; a "
            "live run commits every order's write-ahead before the broker sees it (1)"
        )
    if feed.kind not in ("synthetic", "alpaca", "json", "replay"):
        raise SettingsError(
            f"settings: feed.kind: {feed.kind!r} is not available in this build; "
            "use 'synthetic', 'alpaca', 'json' or 'replay'"
        )
    if feed.kind == "replay" and not feed.replay_file:
        raise SettingsError("settings: feed.replay_file: empty, but feed.kind 'replay' needs one")
    if feed.kind in ("alpaca", "json"):
        for key in ("url", "backup_url"):
            url = getattr(feed, key)
            if (url or key == "url") and not url.startswith(("ws://", "wss://")):
                raise SettingsError(
                    f"settings: feed.{key}: {url!r} is not a ws:// or wss:// URL "
                    f"(feed.kind {feed.kind!r} needs one)"
                )


def actor(
    name: str, cls: type[AegisActor], rt: Runtime, *extra: Any, shutdown_timeout_s: float = 5.0
) -> ChildSpec:
    def factory(ctx: ChildContext) -> Any:
        return cls.start(ctx, rt, *extra)

    return ChildSpec(name, factory, shutdown_timeout_s=shutdown_timeout_s)


def subscribe(rt: Runtime) -> None:
    """Who hears what: every fan-out of the tree, declared in one place."""
    rt.directory.subscribe(TOPIC_MODE, EXECUTION, POSTURE, MARKET, STORE)
    rt.directory.subscribe(TOPIC_DECISIONS, STORE, WATCHDOG)  # ledger; accuracy (SPEC 5.3)


def build(rt: Runtime, broker: Broker) -> tuple[list[ChildSpec], Policy]:
    s = rt.settings
    sup = s.supervision
    subscribe(rt)

    events = event_sink(rt)

    roles = supervisor_spec(
        ROLES,
        [
            actor(ANALYST, Analyst, rt),
            actor(VERIFIER, Verifier, rt),
            actor(COMMANDER, Commander, rt),
        ],
        policy(sup.roles),
        on_exhausted=exhausted_to(rt, sup.roles.on_exhausted),
        on_event=events,
        shutdown_timeout_s=6.0,
    )
    gateway = supervisor_spec(
        GATEWAY,
        [actor(MARKET, MarketFeed, rt), actor(CALENDAR, Calendar, rt), actor(NEWS, News, rt)],
        policy(sup.gateway),
        on_exhausted=exhausted_to(rt, sup.gateway.on_exhausted),
        on_event=events,
        shutdown_timeout_s=6.0,
    )
    children = [
        actor(STORE, Store, rt),
        actor(WATCHDOG, Watchdog, rt),
        actor(POSTURE, PostureActor, rt),
        actor(EXECUTION, Execution, rt, broker),
        roles,
        actor(CONTEXT, ContextLoader, rt),
    ]
    if s.store.redis_url:  # the admin channel lives on Redis; without it there is no admin
        children.append(actor(ADMIN, Admin, rt))
    if s.dashboard.port:
        children.append(actor(DASHBOARD, Dashboard, rt))
    # Last to start, first to stop: no event enters once "stopping" is logged (issue 11).
    children.append(gateway)
    return children, policy(sup.root)


def event_sink(rt: Runtime) -> Any:
    """Supervisor events: a log line and a message to the watchdog (restarts, escalations)."""

    def events(ev: dict[str, Any]) -> None:
        quiet = ev.get("type") == "supervisor.child_started" and not ev.get("restarts")
        log.log("DEBUG" if quiet else "WARNING", "supervision: {}", ev)
        data = {k: v if isinstance(v, int | float | str | None) else str(v) for k, v in ev.items()}
        rt.directory.tell(WATCHDOG, SupervisorEvent(data=data))

    return events


def exhausted_to(rt: Runtime, mode: str) -> Any:
    """What a supervisor that gave up does before escalating: move the trading mode."""

    def go(path: str) -> None:
        log.critical("supervisor {} gave up: trading mode -> {}", path, mode)
        rt.directory.tell(
            WATCHDOG, RequestMode(target=TradingMode(mode), reason=f"supervisor {path} gave up")
        )

    return go
