"""Actor kills during a replay: the chaos suite's in-process scenario.

Seeded random-walk bars are replayed through the whole tree on a virtual clock (as a
backtest does), with the paper broker's book persisted beside a SQLite ledger. Between
bars, random actors are killed in the two ways an actor dies in production: an operator
restart through its supervisor (what `admin restart` does) and a crash of a message
handler (the supervisor restarts it after its backoff). Intensity limits are raised so the
kills keep landing on a trading tree instead of ending it in `safe`.
"""

from __future__ import annotations

import contextlib
import csv
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aegis_actors.audit import BrokerView, LedgerView, Violation, audit

SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY")
BAR_S = 60.0
START_TS = 1_767_623_400.0  # 2026-01-05 14:30 UTC
KILLS_PER_BAR = 2
TARGETS = (
    "execution",
    "execution",  # the actor that holds the money: killed twice as often
    "store",
    "context",
    "analyst",
    "verifier",
    "commander",
    "posture",
    "watchdog",
    "market",
)


class ChaosCrash:
    """Told to an actor to make its handler raise (installed only by this module)."""


def _crash(_self: Any, _msg: ChaosCrash) -> None:
    raise RuntimeError("chaos: injected crash")


@contextlib.contextmanager
def durable_book(path: Path) -> Iterator[None]:
    """The replay's paper broker keeps its book (and every fill) in `path`, as a live
    run's does, so the audit can hold the ledger against it."""
    import aegis_actors.app as app_module
    from aegis_actors.brokers.durable_paper import DurablePaperBroker

    plain = app_module.make_broker

    def make(settings: Any, rt: Any) -> Any:
        broker = plain(settings, rt)
        if isinstance(broker, DurablePaperBroker):
            return broker
        return DurablePaperBroker(broker, str(path))

    app_module.make_broker = make  # type: ignore[assignment]
    try:
        yield
    finally:
        app_module.make_broker = plain  # type: ignore[assignment]


def write_bars(path: Path, rng: random.Random, times: int) -> None:
    """A volatile random walk per symbol (1 % per bar) so stops and targets are hit."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "open", "high", "low", "close", "volume", "symbol"])
        for symbol in SYMBOLS:
            price = 100.0
            for i in range(times):
                o = price
                price = max(1.0, price * (1.0 + rng.gauss(0.0, 0.01)))
                hi, lo = max(o, price) * 1.002, min(o, price) * 0.998
                ts = START_TS + i * BAR_S
                w.writerow(
                    [
                        f"{ts:.0f}",
                        f"{o:.4f}",
                        f"{hi:.4f}",
                        f"{lo:.4f}",
                        f"{price:.4f}",
                        1000,
                        symbol,
                    ]
                )


def kill(rt: Any, rng: random.Random, parents: dict[str, str | None], problems: list[str]) -> str:
    """Kill one random actor, by operator restart or by a crash; the method, or "" if the
    actor could not be reached (already restarting)."""
    name = rng.choice(TARGETS)
    method = rng.choice(("restart", "crash"))
    if method == "crash":
        return method if rt.directory.tell(name, ChaosCrash()) else ""
    parent = parents[name]
    ref = rt.directory.get(parent) if parent else None
    if ref is None:
        return ""
    try:
        ref.proxy().restart_child(name).get(timeout=10.0)
    except Exception as exc:
        problems.append(f"restart: {name} refused: {exc}")
        return ""
    return method


def operator_normal(rt: Any) -> int:
    """A killed store fails a write-ahead, which moves the desk to `limited` for good (no
    automatic way down); the operator puts it back, as `admin mode --set normal` does,
    so later bars still trade. 1 if it had to."""
    from aegis_actors.context import K_MODE
    from aegis_actors.messages import RequestMode, TradingMode
    from aegis_actors.runtime import WATCHDOG

    if (rt.cache.get_json(K_MODE) or "normal") == "normal":
        return 0
    rt.directory.ask(
        WATCHDOG,
        RequestMode(target=TradingMode.NORMAL, reason="chaos operator", operator=True),
        timeout=10.0,
    )
    return 1


def back_up(rt: Any, clock: Any, names: set[str], wait_idle: Any) -> bool:
    """Every target running again, giving the clock up to 60 s of restart backoffs and a
    supervisor up to 20 real seconds (stopping a child waits out its handler)."""
    deadline = time.monotonic() + 20.0
    advanced = 0
    while True:
        if all(rt.directory.state(n) == "running" for n in names):
            return True
        if advanced >= 60 and time.monotonic() > deadline:
            return False
        if advanced < 60:
            clock.advance(1.0)
            advanced += 1
        else:
            time.sleep(0.01)
        wait_idle(30.0)


def run_replay(
    folder: Path, rng: random.Random, kills: int
) -> tuple[list[Violation], dict[str, Any]]:
    import aegis_actors.base as base_module
    from aegis_actors.admin.actor import parent_of
    from aegis_actors.app import Aegis
    from aegis_actors.backtest.bars import load_bars
    from aegis_actors.backtest.idle import wait_idle
    from aegis_actors.backtest.replay import settle
    from aegis_actors.base import AegisActor
    from aegis_actors.clock import VirtualClock
    from aegis_actors.messages import ReplayBar
    from aegis_actors.runtime import MARKET
    from aegis_actors.settings import load_settings

    # The crash handler, and its message class where the handler check looks for it.
    AegisActor.on_ChaosCrash = _crash  # type: ignore[attr-defined]
    base_module.ChaosCrash = ChaosCrash  # type: ignore[attr-defined]
    times = max(10, kills // KILLS_PER_BAR + 5)
    data = folder / "bars.csv"
    write_bars(data, rng, times)
    bars = load_bars(data, None).bars
    lenient = {"max_restarts": 1000, "within_s": 60.0}
    rules = {"backend": "rules"}
    settings = load_settings(
        None,
        feed={"kind": "replay", "replay_file": str(data), "symbols": list(SYMBOLS)},
        broker={"kind": "paper", "paper_state_path": str(folder / "var" / "paper.json")},
        store={
            "sqlite_path": str(folder / "var" / "aegis.db"),
            "spool_path": str(folder / "var" / "spool.db"),
            "redis_url": "",
            "postgres_dsn": "",
        },
        redis_url="",
        postgres_dsn="",
        dashboard={"port": 0},
        run={"log_dir": str(folder / "logs")},
        roles={"analyst": rules, "verifier": rules, "commander": rules},
        risk={"entry_ttl_s": 1.5 * BAR_S},
        supervision={"root": lenient, "roles": lenient, "gateway": lenient},
    )
    clock = VirtualClock(start=bars[0].ts - 1.0)
    app = Aegis(settings, clock=clock, stderr=False)
    with durable_book(folder / "var" / "paper.json"):
        rt = app.start()
    problems: list[str] = []
    done = 0
    by_method = {"restart": 0, "crash": 0}
    resets = 0
    try:
        assert rt.tree is not None
        tree = rt.tree()
        parents = {name: parent_of(tree, name) for name in set(TARGETS)}
        settle(rt)
        i = 0
        while i < len(bars):
            ts = bars[i].ts
            clock.advance(ts - clock.now())
            wait_idle(30.0)
            while i < len(bars) and bars[i].ts == ts:
                b = bars[i]
                rt.directory.tell(
                    MARKET,
                    ReplayBar(
                        symbol=b.symbol,
                        ts=b.ts,
                        open=b.open,
                        high=b.high,
                        low=b.low,
                        close=b.close,
                        volume=b.volume,
                    ),
                )
                i += 1
            # The kills race the bar's processing: the tells above are still in flight.
            for _ in range(min(KILLS_PER_BAR, kills - done)):
                method = kill(rt, rng, parents, problems)
                if method:
                    done += 1
                    by_method[method] += 1
            wait_idle(30.0)  # the supervisors have seen the crashes and set their timers
            clock.advance(6.0)  # crash restarts wait out their backoff on the clock
            wait_idle(30.0)
            if not back_up(rt, clock, set(TARGETS), wait_idle):
                down = {n: rt.directory.state(n) for n in TARGETS}
                down = {n: st for n, st in down.items() if st != "running"}
                problems.append(f"restart: not back 60 s after a kill at bar {ts:.0f}: {down}")
                break
            settle(rt)
            resets += operator_normal(rt)
        clock.advance(10.0)
        wait_idle(30.0)
    finally:
        app.stop("chaos replay over")
        del AegisActor.on_ChaosCrash  # type: ignore[attr-defined]
        del base_module.ChaosCrash  # type: ignore[attr-defined]
    view = LedgerView.read(str(folder / "var" / "aegis.db"))
    paper = folder / "var" / "paper.json"
    broker = BrokerView.from_paper_state(paper) if paper.exists() else BrokerView()
    found = audit(view, broker, now=clock.now(), write_ahead_deadline_s=2.0)
    return found, {
        "kills": done,
        "by_method": by_method,
        "mode_resets": resets,
        "orders": len(view.orders),
        "fills": len(view.fills),
        "problems": problems,
    }
