"""Chaos suite: break a running desk on purpose, then audit its books.

    python scripts/chaos.py [--seed N] [--kills 20] [--pg-outages 5] [--redis-outages 5]
                            [--actor-kills 1000] [--sigterms 2] [--only NAME,...] [--keep]

Scenarios (each in its own folder, each with a fresh ledger; `--only` picks some):
- kill9-sqlite / kill9-postgres / kill9-default: `python -m aegis_actors` killed with
  SIGKILL at seeded random moments and started again in the same folder, then one clean
  run (kill9-default keeps the default broker settings, so only the ledger's own promises
  are audited: no broker book to compare with);
- pg-outage / redis-outage: PostgreSQL or Redis reached through a TCP proxy that is cut
  (connections reset) or frozen (black hole) mid-run, then restored;
- kill9-outage: kill -9 while PostgreSQL is cut or frozen, restart while it is still down,
  then restore it;
- replay-actor-kills: bars replayed in-process on a virtual clock while actors are killed
  (operator restarts through their supervisor, and crashes of a handler);
- sigterm: SIGTERM under a fast feed; the run must stop cleanly and place no order after
  "stopping" is logged.

After each scenario `aegis_actors.audit` compares the ledger with the paper broker's
durable book (`broker.paper_state_path`) and every violation is printed and counted. The
table at the end is what README.md shows. Exit status 1 when any violation was found.

PostgreSQL and Redis come from `AEGIS_POSTGRES_DSN` / `AEGIS_REDIS_URL` (defaults: the
local servers, Redis db 14); every scenario gets its own database and key prefix, dropped
afterwards unless `--keep`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tcp_proxy import TcpProxy, proxied_dsn  # noqa: E402

from aegis_actors.audit import BrokerView, LedgerView, Violation, audit  # noqa: E402

PG_BASE = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_BASE = "redis://127.0.0.1:6379/14"
WRITE_AHEAD_DEADLINE_S = 2.0
STOP_GRACE_S = 30.0
ADMIN_SECRET = uuid.uuid4().hex  # this chaos run's operator; never logged
# Lines of a run's log that say a stop was not clean (an actor hung past its timeout).
UNCLEAN_STOP = (
    "ignored its shutdown timeout",
    "did not stop within",
)  # a run past its --for by this much is called hung

# A fast, volatile synthetic market so a few seconds carry many orders and exits.
FAST_ENV = {
    "AEGIS_FEED__TICK_INTERVAL_S": "0.02",
    "AEGIS_FEED__VOLATILITY": "0.01",
    "AEGIS_DASHBOARD__PORT": "0",
    "AEGIS_RUN__LOG_LEVEL": "WARNING",
}


# -- results -------------------------------------------------------------------------------


@dataclass
class Result:
    """One scenario's figures; `problems` are audit violations and run failures."""

    name: str
    store: str
    runs: int = 0
    kills: int = 0
    pg_cut: int = 0
    pg_frozen: int = 0
    redis_cut: int = 0
    redis_frozen: int = 0
    actor_kills: int = 0
    sigterms: int = 0
    orders: int = 0
    fills: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    operator_resets: int = 0
    repro: str = ""


COLUMNS = (
    ("scenario", "name"),
    ("store", "store"),
    ("runs", "runs"),
    ("kill -9", "kills"),
    ("PG cut", "pg_cut"),
    ("PG frozen", "pg_frozen"),
    ("Redis cut", "redis_cut"),
    ("Redis frozen", "redis_frozen"),
    ("actor kills", "actor_kills"),
    ("SIGTERM", "sigterms"),
    ("orders", "orders"),
    ("fills", "fills"),
    ("violations", "violations"),
    ("s", "seconds"),
)


def table(results: list[Result]) -> str:
    """A Markdown table, one row per scenario and a total row."""

    def cell(r: Result, attr: str) -> str:
        if attr == "violations":
            return str(len(r.problems))
        v = getattr(r, attr)
        return f"{v:.0f}" if isinstance(v, float) else str(v)

    total = Result("**total**", "")
    for r in results:
        for _, attr in COLUMNS[2:]:
            if attr != "violations":
                setattr(total, attr, getattr(total, attr) + getattr(r, attr))
        total.problems += r.problems
    head = "| " + " | ".join(h for h, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" if i < 2 else "--:" for i in range(len(COLUMNS))) + "|"
    rows = ["| " + " | ".join(cell(r, a) for _, a in COLUMNS) + " |" for r in [*results, total]]
    return "\n".join([head, rule, *rows])


# -- a desk: one folder, one ledger, one broker book ----------------------------------------


@dataclass
class Desk:
    """The folder a run lives in, and how to start `python -m aegis_actors` there."""

    folder: Path
    pg_dsn: str = ""
    redis_url: str = ""
    redis_prefix: str = ""
    env_extra: dict[str, str] = field(default_factory=dict)
    durable_broker: bool = True  # False: the broker settings a new user starts with
    launches: int = 0

    @property
    def ledger(self) -> str:
        return self.pg_dsn or str(self.folder / "var" / "aegis.db")

    @property
    def paper_state(self) -> Path:
        return self.folder / "var" / "paper.json"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
        env.update(FAST_ENV)
        env.update(
            PYTHONPATH=str(ROOT),
            AEGIS_BROKER__PAPER_STATE_PATH=str(self.paper_state),
            AEGIS_STORE__SQLITE_PATH=str(self.folder / "var" / "aegis.db"),
            AEGIS_STORE__SPOOL_PATH=str(self.folder / "var" / "spool.db"),
            AEGIS_RUN__LOG_DIR=str(self.folder / "logs"),
        )
        if self.pg_dsn:
            env["AEGIS_POSTGRES_DSN"] = self.pg_dsn
        if self.redis_url:
            env["AEGIS_REDIS_URL"] = self.redis_url
            env["AEGIS_STORE__REDIS_PREFIX"] = self.redis_prefix
            # The operator's channel, private to this desk (others share the Redis server).
            env["AEGIS_ADMIN__CHANNEL"] = f"{self.redis_prefix}admin"
            env["AEGIS_ADMIN__EVENTS_CHANNEL"] = f"{self.redis_prefix}events"
            env["AEGIS_ADMIN_SECRET"] = ADMIN_SECRET
        if not self.durable_broker:
            del env["AEGIS_BROKER__PAPER_STATE_PATH"]
        env.update(self.env_extra)
        env.update(overrides)
        return env

    def start(self, for_s: float, **env: str) -> subprocess.Popen[bytes]:
        self.launches += 1
        out = open(self.folder / f"run-{self.launches:02d}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "aegis_actors", "--for", f"{for_s:g}"],
            cwd=self.folder,
            env=self.env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def finish(self, proc: subprocess.Popen[bytes], for_s: float, result: Result) -> int | None:
        """Wait for a run to end by itself; a hang or a failure is a problem."""
        try:
            rc = proc.wait(for_s + STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            result.problems.append(
                f"run: {self.launches} did not stop within {STOP_GRACE_S:g}s of --for {for_s:g}"
            )
            return None
        text = (self.folder / f"run-{self.launches:02d}.log").read_text(errors="replace")
        if rc != 0:
            last = [ln for ln in text.splitlines() if ln.strip()][-1:] or [""]
            result.problems.append(f"run: {self.launches} exited {rc}: {last[0][:200]}")
        for line in text.splitlines():
            if any(sign in line for sign in UNCLEAN_STOP):
                result.problems.append(f"stop: run {self.launches}: {line.strip()[:200]}")
        return rc

    def admin(self, *args: str) -> int:
        """`python -m aegis_actors admin ARGS` against this desk's running process."""
        done = subprocess.run(
            [sys.executable, "-m", "aegis_actors", "admin", *args, "--timeout", "5"],
            cwd=self.folder,
            env=self.env(),
            capture_output=True,
            timeout=30,
        )
        return done.returncode

    def clean_run(self, for_s: float, result: Result) -> None:
        result.runs += 1
        self.finish(self.start(for_s), for_s, result)

    def audit(self, result: Result, now: float | None = None) -> list[Violation]:
        try:
            view = LedgerView.read(self.ledger)
        except Exception as exc:  # an unreadable ledger is itself the finding
            result.problems.append(f"ledger: unreadable: {exc}")
            return []
        # The default broker settings may keep no book (then only the ledger's own checks
        # apply) or keep it at var/paper.json, where this desk points a durable one too.
        broker: BrokerView | None = None
        if self.paper_state.exists():
            broker = BrokerView.from_paper_state(self.paper_state)
        elif self.durable_broker:
            broker = BrokerView()  # the broker never took an order
        found = audit(
            view,
            broker,
            now=time.time() if now is None else now,
            write_ahead_deadline_s=WRITE_AHEAD_DEADLINE_S,
        )
        result.orders += len(view.orders)
        result.fills += len(view.fills)
        result.problems += [str(v) for v in found]
        return found


# -- services: a fresh PostgreSQL database and Redis prefix per scenario --------------------


@dataclass
class Services:
    pg_base: str
    redis_base: str
    keep: bool = False
    created: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    def database(self, tag: str) -> str:
        import psycopg2
        import psycopg2.extensions

        name = f"aegis_chaos_{tag}_{uuid.uuid4().hex[:8]}"
        conn = psycopg2.connect(self.pg_base, connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        self.created.append(name)
        return psycopg2.extensions.make_dsn(self.pg_base, dbname=name)

    def prefix(self, tag: str) -> str:
        p = f"aegis-chaos-{tag}-{uuid.uuid4().hex[:8]}:"
        self.prefixes.append(p)
        return p

    def cleanup(self) -> None:
        if self.keep:
            return
        with contextlib.suppress(Exception):
            import psycopg2

            conn = psycopg2.connect(self.pg_base, connect_timeout=5)
            conn.autocommit = True
            with conn.cursor() as cur:
                for name in self.created:
                    cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.close()
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(self.redis_base, socket_timeout=5)
            for p in self.prefixes:
                for key in client.scan_iter(match=p + "*", count=1000):
                    client.delete(key)
            client.close()


def redis_proxy(url: str) -> tuple[TcpProxy, str]:
    u = urlparse(url)
    proxy = TcpProxy(u.hostname or "127.0.0.1", u.port or 6379)
    return proxy, f"redis://127.0.0.1:{proxy.port}{u.path}"


# -- scenarios ----------------------------------------------------------------------------


def kill9(
    desk: Desk,
    result: Result,
    rng: random.Random,
    kills: int,
    window: tuple[float, float],
    settle_s: float = 4.0,
) -> None:
    """Start, SIGKILL at a random moment (start-up, reconciliation or trading), repeat;
    then one clean run in the same folder, whose books are audited."""
    for _ in range(kills):
        proc = desk.start(60)
        result.runs += 1
        time.sleep(rng.uniform(*window))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            result.kills += 1
        else:
            result.problems.append(
                f"run: {desk.launches} ended before its kill: rc {proc.returncode}"
            )
        proc.wait(10)
    desk.clean_run(settle_s, result)
    desk.audit(result)


def outages(
    desk: Desk,
    result: Result,
    rng: random.Random,
    proxy: TcpProxy,
    which: str,
    count: int,
    *,
    warm_s: float = 4.0,
    down_s: tuple[float, float] = (2.0, 5.0),
    gap_s: tuple[float, float] = (2.0, 4.0),
    settle_s: float = 4.0,
) -> None:
    """One run while its PostgreSQL or Redis connection is cut or frozen `count` times,
    alternating, each for a few seconds; then a clean restart and the audit."""
    plan = [("cut" if i % 2 == 0 else "frozen", rng.uniform(*down_s)) for i in range(count)]
    gaps = [rng.uniform(*gap_s) for _ in plan]
    for_s = warm_s + sum(d + g for (_, d), g in zip(plan, gaps, strict=True)) + 2.0
    proc = desk.start(for_s)
    result.runs += 1
    time.sleep(warm_s)
    for (how, down_s), gap in zip(plan, gaps, strict=True):
        if proc.poll() is not None:
            break
        proxy.cut() if how == "cut" else proxy.freeze()
        setattr(result, f"{which}_{how}", getattr(result, f"{which}_{how}") + 1)
        time.sleep(down_s)
        proxy.restore()
        time.sleep(gap)
        # The outage left the desk `limited` (automatic moves only go up): the operator
        # puts it back so the next outage meets a trading desk.
        if proc.poll() is None and desk.redis_url:
            ok = desk.admin("mode", "--set", "normal") == 0
            result.operator_resets += ok
    desk.finish(proc, for_s, result)
    desk.clean_run(settle_s, result)
    desk.audit(result)


def kill9_in_outage(
    desk: Desk, result: Result, rng: random.Random, proxy: TcpProxy, rounds: int
) -> None:
    """kill -9 while PostgreSQL is cut or frozen, and a restart that meets it still down
    (spooled writes, reconciliation without the ledger), restored a few seconds later."""
    for i in range(rounds):
        how = "cut" if i % 2 == 0 else "frozen"
        proc = desk.start(60)
        result.runs += 1
        time.sleep(rng.uniform(3.0, 5.0))
        proxy.cut() if how == "cut" else proxy.freeze()
        setattr(result, f"pg_{how}", getattr(result, f"pg_{how}") + 1)
        time.sleep(rng.uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        result.kills += 1
        proc.wait(10)
        proc = desk.start(60)  # PostgreSQL still down at start
        result.runs += 1
        time.sleep(rng.uniform(2.0, 4.0))
        proxy.restore()
        time.sleep(rng.uniform(3.0, 5.0))
        proc.send_signal(signal.SIGTERM)
        desk.finish(proc, 0, result)
    desk.clean_run(6, result)
    desk.audit(result)


def sigterm(
    desk: Desk, result: Result, rng: random.Random, count: int, settle_s: float = 3.0
) -> None:
    """SIGTERM under a fast feed: exit 0, and no order written after "stopping"."""
    for _ in range(count):
        proc = desk.start(60, AEGIS_FEED__TICK_INTERVAL_S="0.005")
        result.runs += 1
        time.sleep(rng.uniform(3.0, 7.0))
        proc.send_signal(signal.SIGTERM)
        result.sigterms += 1
        desk.finish(proc, 0, result)
        stopped = stopping_time(desk.folder / "logs" / "aegis.jsonl")
        if stopped is None:
            result.problems.append(
                f"sigterm: run {desk.launches}: no 'stopping' line after SIGTERM"
            )
            continue
        late = [
            o["client_order_id"]
            for o in LedgerView.read(desk.ledger).orders
            if (o["created_at"] or 0) > stopped + 1e-3
        ]
        if late:
            result.problems.append(
                f"sigterm: run {desk.launches}: {len(late)} orders written after 'stopping': "
                f"{late[:3]}"
            )
    desk.clean_run(settle_s, result)
    desk.audit(result)


def stopping_time(log: Path) -> float | None:
    """The time of the last 'stopping' line of the JSON log."""
    last = None
    for line in log.read_text(errors="replace").splitlines():
        if '"stopping' in line:
            with contextlib.suppress(ValueError, KeyError):
                last = datetime.fromisoformat(json.loads(line)["ts"]).timestamp()
    return last


def replay_actor_kills(folder: Path, result: Result, rng: random.Random, kills: int) -> None:
    """Bars replayed in-process on a virtual clock while actors are killed between bars
    and the broker's book persists beside a SQLite ledger; the audit runs at the end."""
    from chaos_replay import run_replay  # scripts/ sits beside this file

    found, figures = run_replay(folder, rng, kills)
    result.runs += 1
    result.actor_kills += figures["kills"]
    result.orders += figures["orders"]
    result.fills += figures["fills"]
    result.problems += figures["problems"] + [str(v) for v in found]
    result.notes.append(
        "kills by {by_method}; operator put the mode back to normal {mode_resets} times".format(
            **figures
        )
    )


# -- the suite -------------------------------------------------------------------------------


@dataclass
class Plan:
    seed: int
    kills: int = 21
    pg_outages: int = 5
    redis_outages: int = 5
    actor_kills: int = 1000
    sigterms: int = 2
    kill_outages: int = 2
    only: frozenset[str] = frozenset()
    keep: bool = False
    out: Path | None = None

    def wants(self, name: str) -> bool:
        return not self.only or any(name.startswith(o) for o in self.only)


SCENARIOS = (
    "kill9-sqlite",
    "kill9-postgres",
    "kill9-default",
    "pg-outage",
    "kill9-outage",
    "redis-outage",
    "replay",
    "sigterm",
)


def run_suite(plan: Plan, log: Any = print) -> list[Result]:
    base = plan.out or Path(tempfile.mkdtemp(prefix="aegis-chaos-"))
    base.mkdir(parents=True, exist_ok=True)
    svc = Services(
        os.environ.get("AEGIS_POSTGRES_DSN") or PG_BASE,
        os.environ.get("AEGIS_REDIS_URL") or REDIS_BASE,
        keep=plan.keep,
    )
    results: list[Result] = []

    @contextlib.contextmanager
    def scenario(name: str, store: str, cmd: str) -> Iterator[tuple[Result, Path, random.Random]]:
        """A folder and a random source of its own: `--only NAME` replays the same moments."""
        nth = sum(r.name == name for r in results)
        rng = random.Random(f"{plan.seed}:{name}:{nth}")
        folder = base / f"{len(results) + 1:02d}-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        r = Result(name, store, repro=f"{cmd} (folder {folder})")
        t0 = time.monotonic()
        try:
            yield r, folder, rng
        except Exception as exc:
            r.problems.append(f"scenario: crashed: {type(exc).__name__}: {exc}")
        r.seconds = time.monotonic() - t0
        results.append(r)
        log(
            f"{name:>16}: runs {r.runs} kills {r.kills} actor kills {r.actor_kills} "
            f"orders {r.orders} fills {r.fills} violations {len(r.problems)} ({r.seconds:.0f}s)"
        )
        if r.operator_resets:
            r.notes.append(f"operator set mode normal {r.operator_resets} times")
        for note in r.notes:
            log(f"{'':>18}{note}")
        for line in summary(r.problems):
            log(f"{'':>18}{line}")

    me = f"python scripts/chaos.py --seed {plan.seed}"
    try:
        # kill -9: a third on SQLite, a third on PostgreSQL+Redis, both with the paper
        # broker's book in a file (audited against the ledger), and a third on
        # PostgreSQL+Redis with the default broker settings (the ledger's own checks).
        per_desk = 7
        sqlite_kills = plan.kills // 3
        default_kills = plan.kills // 3
        pg_kills = plan.kills - sqlite_kills - default_kills
        if plan.wants("kill9-sqlite"):
            for n in _chunks(sqlite_kills, per_desk):
                with scenario("kill9-sqlite", "sqlite", f"{me} --only kill9-sqlite") as (r, d, rng):
                    kill9(Desk(d), r, rng, n, (0.5, 6.0))
        if plan.wants("kill9-postgres"):
            for n in _chunks(pg_kills, per_desk):
                with scenario("kill9-postgres", "pg+redis", f"{me} --only kill9-postgres") as (
                    r,
                    d,
                    rng,
                ):
                    desk = Desk(d, svc.database("k9"), svc.redis_base, svc.prefix("k9"))
                    kill9(desk, r, rng, n, (0.5, 6.0))
        if plan.wants("kill9-default"):
            for n in _chunks(default_kills, per_desk):
                with scenario("kill9-default", "pg+redis", f"{me} --only kill9-default") as (
                    r,
                    d,
                    rng,
                ):
                    desk = Desk(d, svc.database("kd"), svc.redis_base, svc.prefix("kd"))
                    desk.durable_broker = False
                    kill9(desk, r, rng, n, (0.5, 6.0))
        if plan.wants("pg-outage"):
            for n in _chunks(plan.pg_outages, 3):
                with scenario("pg-outage", "pg+redis", f"{me} --only pg-outage") as (r, d, rng):
                    dsn = svc.database("pg")
                    proxy, via = proxied_dsn(dsn)
                    try:
                        desk = Desk(d, via, svc.redis_base, svc.prefix("pg"))
                        outages(desk, r, rng, proxy, "pg", n)
                    finally:
                        proxy.close()
        if plan.wants("kill9-outage") and plan.kill_outages:
            with scenario("kill9-outage", "pg+redis", f"{me} --only kill9-outage") as (r, d, rng):
                dsn = svc.database("ko")
                proxy, via = proxied_dsn(dsn)
                try:
                    desk = Desk(d, via, svc.redis_base, svc.prefix("ko"))
                    kill9_in_outage(desk, r, rng, proxy, plan.kill_outages)
                finally:
                    proxy.close()
        if plan.wants("redis-outage"):
            for n in _chunks(plan.redis_outages, 3):
                with scenario("redis-outage", "pg+redis", f"{me} --only redis-outage") as (
                    r,
                    d,
                    rng,
                ):
                    proxy, via = redis_proxy(svc.redis_base)
                    try:
                        desk = Desk(d, svc.database("rd"), via, svc.prefix("rd"))
                        outages(desk, r, rng, proxy, "redis", n)
                    finally:
                        proxy.close()
        if plan.wants("replay") and plan.actor_kills:
            with scenario("replay-actor-kills", "sqlite", f"{me} --only replay") as (r, d, rng):
                replay_actor_kills(d, r, rng, plan.actor_kills)
        if plan.wants("sigterm") and plan.sigterms:
            with scenario("sigterm", "pg+redis", f"{me} --only sigterm") as (r, d, rng):
                desk = Desk(d, svc.database("st"), svc.redis_base, svc.prefix("st"))
                sigterm(desk, r, rng, plan.sigterms)
    finally:
        svc.cleanup()
        if not plan.keep and plan.out is None:
            shutil.rmtree(base, ignore_errors=True)
    return results


def summary(problems: list[str], examples: int = 3) -> list[str]:
    """Problems grouped by kind (the text before the first colon), a few of each shown."""
    kinds: dict[str, list[str]] = {}
    for p in problems:
        kinds.setdefault(p.split(":", 1)[0], []).append(p)
    lines: list[str] = []
    for kind, items in kinds.items():
        lines.append(f"{kind}: {len(items)}")
        lines += [f"  {p[:240]}" for p in items[:examples]]
    return lines


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kills", type=int, default=21, help="kill -9 restarts in all")
    ap.add_argument("--pg-outages", type=int, default=5)
    ap.add_argument("--redis-outages", type=int, default=5)
    ap.add_argument("--actor-kills", type=int, default=1000, help="during the replay")
    ap.add_argument("--sigterms", type=int, default=2)
    ap.add_argument(
        "--kill-outages", type=int, default=2, help="kill -9 during a PG outage (restart in it)"
    )
    ap.add_argument("--only", default="", help=f"comma list of: {', '.join(SCENARIOS)}")
    ap.add_argument("--keep", action="store_true", help="keep folders, databases and keys")
    ap.add_argument("--out", type=Path, help="scenario folders go here (kept)")
    a = ap.parse_args(argv)
    plan = Plan(
        seed=a.seed,
        kills=a.kills,
        pg_outages=a.pg_outages,
        redis_outages=a.redis_outages,
        actor_kills=a.actor_kills,
        sigterms=a.sigterms,
        kill_outages=a.kill_outages,
        only=frozenset(o.strip() for o in a.only.split(",") if o.strip()),
        keep=a.keep,
        out=a.out,
    )
    t0 = time.monotonic()
    results = run_suite(plan)
    print()
    print(f"chaos suite, seed {plan.seed}, {time.monotonic() - t0:.0f}s:")
    print(table(results))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
