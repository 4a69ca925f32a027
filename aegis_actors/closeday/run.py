"""`close-day`: SPEC 7's closing checklist, one step per line, exit 0 only when all passed.

1. cancel unfilled orders: by the running process over the admin channel when there is
   one (it owns the broker session), else at the broker directly; the ledger follows.
2. the day's performance report: daily-YYYY-MM-DD.json and .html.
3. archive the day's logs, gzipped, into the archive folder.
4. next-day readiness: the `check` list, and the positions carried overnight with stops.

Running it twice for a day changes nothing the second time: nothing is left to cancel,
the reports are rewritten only when their content differs, the archive already holds
every line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from aegis_actors.checks import Status, run_checks, scrubber
from aegis_actors.closeday import html, ledger, report
from aegis_actors.closeday.archive import archive_day
from aegis_actors.settings import Settings
from aegis_actors.store import open_database
from aegis_actors.store.base import Database

ADMIN_TIMEOUT_S = 20.0


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    warn: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def line(self, width: int = 0) -> str:
        word = "FAIL" if not self.ok else ("WARN" if self.warn else "PASS")
        return f"{word}  {self.name:<{width}}  {self.detail}"


# -- step 1: cancel unfilled orders -----------------------------------------------------


def running_process(s: Settings) -> Any:
    """A Redis client when a process listens on the admin channel (and we can sign)."""
    if not (s.store.redis_url and s.admin_secret.get_secret_value()):
        return None
    import redis

    try:
        client = redis.Redis.from_url(s.store.redis_url, socket_connect_timeout=3, socket_timeout=5)
        subs = dict(client.pubsub_numsub(s.admin.channel))
        listeners = subs.get(s.admin.channel.encode(), subs.get(s.admin.channel, 0))  # type: ignore[call-overload]
    except redis.RedisError:
        return None
    if not listeners:
        client.close()
        return None
    return client


def dashboard_answers(s: Settings) -> str | None:
    """The URL of a process's dashboard that answers here (a run we cannot ask)."""
    d = s.dashboard
    if not d.port:
        return None
    import requests

    url = f"http://{d.host}:{d.port}/api/status"
    try:
        ok = requests.get(url, timeout=2.0).status_code == 200
    except requests.RequestException:
        return None
    return url if ok else None


def _describe(orders: list[dict[str, Any]]) -> str:
    def one(o: dict[str, Any]) -> str:
        what = " ".join(str(o[k]) for k in ("symbol", "side", "qty") if o.get(k) is not None)
        return f"{what} ({o['client_order_id']})" if what else str(o["client_order_id"])

    return ", ".join(one(o) for o in orders)


def cancel_via_process(s: Settings, client: Any) -> Step:
    from aegis_actors.admin.client import round_trip
    from aegis_actors.admin.protocol import request

    req = request(s.admin_secret.get_secret_value(), "close_day", {}, time.time())
    try:
        answer = round_trip(client, s.admin.channel, req, ADMIN_TIMEOUT_S)
    finally:
        client.close()
    if answer is None:
        return Step("cancel unfilled orders", False, "the running process did not answer in time")
    if not answer.get("ok"):
        return Step("cancel unfilled orders", False, f"refused: {answer.get('error')}")
    res = answer.get("result") or {}
    cancelled, still = res.get("cancelled") or [], res.get("still_open") or []
    detail = f"by the running process: cancelled {len(cancelled)}" + (
        f": {_describe(cancelled)}" if cancelled else " (none open)"
    )
    if still:
        return Step("cancel unfilled orders", False, f"{detail}; still open: {', '.join(still)}")
    return Step("cancel unfilled orders", True, detail, data={"marks": res.get("marks") or {}})


def offline_broker(s: Settings) -> Any:
    """The broker as the process would have made it (None: a plain paper broker, whose
    orders ended with the process)."""
    b = s.broker
    if b.kind == "alpaca":
        from aegis_actors.brokers.alpaca import AlpacaBroker

        return AlpacaBroker(
            b.url,
            b.key_id.get_secret_value(),
            b.secret_key.get_secret_value(),
            timeout_s=b.timeout_s,
            retries=b.retries,
            retry_backoff_s=b.retry_backoff_s,
        )
    if b.paper_state_path:
        from aegis_actors.brokers.durable_paper import DurablePaperBroker
        from aegis_actors.brokers.paper import PaperBroker

        return DurablePaperBroker(PaperBroker(capital=b.capital), b.paper_state_path)
    return None


def cancel_offline(s: Settings, db: Database) -> Step:
    """No process: cancel at the broker ourselves, then bring the ledger in line."""
    from aegis_actors.brokers.base import BrokerError

    now = time.time()
    ledger_open = {
        o["client_order_id"]: o
        for o in db.select("orders")
        if o.get("status") in ledger.OPEN_ORDER_STATUSES
    }
    cancelled: list[dict[str, Any]] = []
    unsettled: list[str] = []
    try:
        broker = offline_broker(s)
        if broker is not None:
            at_broker = {o.client_order_id: o for o in broker.open_orders()}
            for coid in broker.cancel_all():
                o = at_broker.get(coid)
                cancelled.append(
                    {"client_order_id": coid, "symbol": o.symbol, "side": str(o.side), "qty": o.qty}
                    if o
                    else {"client_order_id": coid}
                )
            still = [o.client_order_id for o in broker.open_orders()]
            if still:
                return Step(
                    "cancel unfilled orders", False, f"the broker still holds {', '.join(still)}"
                )
    except (BrokerError, OSError, ValueError) as exc:
        return Step("cancel unfilled orders", False, f"broker: {exc}")
    done = {c["client_order_id"] for c in cancelled}
    for coid, o in ledger_open.items():
        if broker is not None and coid not in done:
            found = broker.order(coid)
            if found is not None and str(found.status) not in ("cancelled", "rejected"):
                unsettled.append(f"{coid} is {found.status} at the broker")
                continue  # a fill made while no process ran: the next start reconciles it
        db.update(
            "orders",
            {"client_order_id": coid},
            {"status": "cancelled", "error": "close-day: unfilled at the close", "updated_at": now},
        )
        if coid not in done:
            cancelled.append(
                {
                    "client_order_id": coid,
                    "symbol": o.get("symbol"),
                    "side": o.get("side"),
                    "qty": o.get("qty"),
                }
            )
    where = "at the broker" if broker is not None else "paper orders ended with the process"
    detail = f"no process running, {where}: cancelled {len(cancelled)}" + (
        f": {_describe(cancelled)}" if cancelled else " (none open)"
    )
    if unsettled:
        return Step(
            "cancel unfilled orders",
            True,
            f"{detail}; next start reconciles {'; '.join(unsettled)}",
            warn=True,
        )
    return Step("cancel unfilled orders", True, detail)


# -- step 2: report; step 3: archive; step 4: readiness --------------------------------


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def report_step(s: Settings, db: Database, day: date, out: Path, marks: dict[str, float]) -> Step:
    led = ledger.load(db, day)
    r = report.build(led, s, marks)
    out.mkdir(parents=True, exist_ok=True)
    j = out / f"daily-{day.isoformat()}.json"
    h = out / f"daily-{day.isoformat()}.html"
    changed = [
        p.name
        for p, text in (
            (j, json.dumps(r, indent=2, sort_keys=True, default=str) + "\n"),
            (h, html.render(r)),
        )
        if write_if_changed(p, text)
    ]
    p = r["pnl"]
    wr = r["win_rate"]
    below = [t["label"] for t in r["accuracy"]["targets"] if t["status"] == "below"]
    detail = (
        f"net {p['net']:,.2f} (realised {p['realised']:,.2f}, unrealised {p['unrealised']:,.2f}, "
        f"fees {p['fees']:,.2f}), {r['trades']} trades, win rate "
        f"{'-' if wr is None else f'{wr * 100:.0f}%'}, max drawdown {p['max_drawdown']:,.2f}; "
        + (f"wrote {', '.join(changed)}" if changed else "unchanged")
        + f" in {out}"
        + (f"; below target: {', '.join(below)}" if below else "")
    )
    return Step("performance report", True, detail, data={"report": r})


def archive_step(s: Settings, day: date) -> Step:
    log_dir = Path(s.run.log_dir)
    archive_dir = Path(s.run.archive_dir) if s.run.archive_dir else log_dir / "archive"
    try:
        a = archive_day(log_dir, archive_dir, day)
    except OSError as exc:
        return Step("archive logs", False, f"{archive_dir}: {exc}")
    if a.lines == 0:
        return Step("archive logs", True, f"no log lines for {day} in {log_dir}", warn=True)
    what = f"added {a.added} lines" if a.added else "already archived"
    return Step("archive logs", True, f"{a.path} ({a.lines} lines, {what})")


def readiness_step(s: Settings, r: dict[str, Any]) -> Step:
    items = run_checks(s)
    failed = [f"{i.name}: {i.detail}" for i in items if i.status is Status.FAIL]
    warned = [i.name for i in items if i.status is Status.WARN]
    carried = r["open_positions"]
    no_stop = [o["symbol"] for o in carried if o.get("stop_loss") is None]
    held = ", ".join(
        f"{o['symbol']} {o['qty']:g} @ {o['avg_price']} stop {o['stop_loss']}" for o in carried
    )
    detail = (
        f"checks {len(items) - len(failed)}/{len(items)} pass"
        + (f" ({len(warned)} warn: {', '.join(warned)})" if warned else "")
        + f"; {len(carried)} positions carried overnight"
        + (f": {held}" if carried else "")
    )
    if failed:
        return Step("next-day readiness", False, f"{detail}; FAIL {'; '.join(failed)}")
    if no_stop:
        return Step("next-day readiness", False, f"{detail}; no stop on {', '.join(no_stop)}")
    return Step("next-day readiness", True, detail, warn=bool(warned))


def close_day(s: Settings, day: date, out: Path) -> list[Step]:
    """The four steps, each line scrubbed of secrets (a driver's error may carry a DSN)."""
    scrub = scrubber(s)
    steps = _close_day(s, day, out)
    for st in steps:
        st.detail = scrub(st.detail)
    return steps


def _close_day(s: Settings, day: date, out: Path) -> list[Step]:
    try:
        db = open_database(
            sqlite_path=s.store.sqlite_path,
            postgres_dsn=s.store.postgres_dsn,
            connect_timeout_s=s.store.connect_timeout_s,
        )
    except Exception as exc:
        return [Step("ledger", False, f"durable store unreachable: {str(exc).splitlines()[0]}")]
    steps: list[Step] = []
    try:
        client = running_process(s)
        live = dashboard_answers(s) if client is None else None
        if live is not None:  # its orders are its own: marking them cancelled would lie
            cancel = Step(
                "cancel unfilled orders",
                False,
                f"a process is running ({live}) but cannot be asked without the admin channel: "
                "set AEGIS_REDIS_URL and AEGIS_ADMIN_SECRET for both, or stop it first",
            )
        else:
            cancel = guarded(
                "cancel unfilled orders",
                lambda: (
                    cancel_via_process(s, client) if client is not None else cancel_offline(s, db)
                ),
            )
        steps.append(cancel)
        rep = guarded(
            "performance report",
            lambda: report_step(s, db, day, out, cancel.data.get("marks") or {}),
        )
        steps.append(rep)
        steps.append(guarded("archive logs", lambda: archive_step(s, day)))
        if "report" in rep.data:
            steps.append(
                guarded("next-day readiness", lambda: readiness_step(s, rep.data["report"]))
            )
        else:
            steps.append(Step("next-day readiness", False, "no report to read positions from"))
    finally:
        db.close()
    return steps


def guarded(name: str, step: Callable[[], Step]) -> Step:
    """A step that raises is a failed step with one line, never a traceback."""
    try:
        return step()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        return Step(name, False, f"{type(exc).__name__}: {first}")
