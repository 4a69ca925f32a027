"""`python -m aegis_actors admin CMD ...`: sign a command, publish it, print the reply.

Exit status: 0 the command was carried out, 1 it was refused, 2 bad usage or no reply
in time (the process may not be running). `admin watch` follows the events channel.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any

import redis

from aegis_actors.admin.protocol import COMMANDS, request
from aegis_actors.redact import redact_text
from aegis_actors.settings import Settings, SettingsError, load_settings

CHOICES = [*COMMANDS, "watch"]
RETRY_S = 0.1
ARG_FLAG = {
    "posture": ("set", "set"),
    "mode": ("set", "set"),
    "restart": ("actor", "actor"),
    "ack": ("alert", "alert"),
}  # command -> (request key, option name)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "admin",
        help="send a signed command to a running process over Redis",
        description="Talk to a running AEGIS over the Redis admin channel. Needs "
        "AEGIS_ADMIN_SECRET and AEGIS_REDIS_URL (or store.redis_url). Exit 0 ok, 1 "
        "refused, 2 bad usage or no reply in time.",
    )
    p.add_argument("cmd", choices=CHOICES, metavar="CMD", help=" | ".join(CHOICES))
    p.add_argument(
        "--set",
        dest="set_",
        metavar="V",
        help="posture: offensive|guerrilla|defensive|auto; mode: normal|limited|safe|halted",
    )
    p.add_argument("--actor", metavar="NAME", help="restart: the actor to restart")
    p.add_argument("--alert", metavar="ID", help="ack: the alert to acknowledge")
    p.add_argument(
        "--full",
        action="store_true",
        help="status: every part in full, with the settings and the tree (default: brief)",
    )
    p.add_argument("--json", action="store_true", help="print the raw JSON reply")
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the reply (default 10)",
    )
    p.add_argument("--count", type=int, metavar="N", help="watch: stop after N events")
    p.add_argument("--settings", metavar="FILE")


def redacted_url(url: str) -> str:
    return redact_text(url)


def fail(text: str, code: int = 2) -> int:
    print(f"admin: {text}", file=sys.stderr)
    return code


def main(a: argparse.Namespace) -> int:
    try:
        s = load_settings(a.settings)
    except SettingsError as exc:
        return fail(str(exc))
    url = s.store.redis_url
    if not url:
        return fail("no Redis configured (set AEGIS_REDIS_URL or store.redis_url)")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3.0, socket_timeout=5.0)
        if a.cmd == "watch":
            return watch(client, s, a)
        return send(client, s, a)
    except redis.RedisError as exc:
        return fail(f"cannot reach Redis at {redacted_url(url)}: {redact_text(str(exc))}")
    except KeyboardInterrupt:
        return 0


def build_args(a: argparse.Namespace) -> dict[str, Any] | None:
    if a.cmd == "status":
        return {"full": True} if a.full else {}
    if a.cmd not in ARG_FLAG:
        return {}
    key, option = ARG_FLAG[a.cmd]
    value = a.set_ if option == "set" else getattr(a, option)
    return None if value is None else {key: value}


def send(client: redis.Redis, s: Settings, a: argparse.Namespace) -> int:
    secret = s.admin_secret.get_secret_value()
    if not secret:
        return fail("AEGIS_ADMIN_SECRET is not set; cannot sign the command")
    args = build_args(a)
    if args is None:
        return fail(f"{a.cmd} needs --{ARG_FLAG[a.cmd][1]}")
    req = request(secret, a.cmd, args, time.time())
    answer = round_trip(client, s.admin.channel, req, a.timeout)
    if answer is None:
        return fail(
            f"no reply to {a.cmd} within {a.timeout:g} s on {s.admin.channel}: the AEGIS process "
            "may not be running (or listens on another Redis or channel), or lost the command "
            "while Redis dropped its subscriber under a flood (send it again)"
        )
    if a.json:
        print(json.dumps(answer, indent=2, default=str))
    elif answer.get("ok"):
        print(render(a.cmd, answer.get("result")))
    else:
        print(f"refused: {answer.get('error')}", file=sys.stderr)
    return 0 if answer.get("ok") else 1


def round_trip(
    client: redis.Redis, channel: str, req: dict[str, Any], timeout: float
) -> dict[str, Any] | None:
    """One command on a connection of its own (the command line sends one and exits)."""
    link = AdminLink(client, channel, one_shot=True)
    try:
        return link.send(req, timeout)
    finally:
        link.close()


def _named(m: dict[str, Any], channel: str) -> bool:
    name = m.get("channel")
    return (name.decode() if isinstance(name, bytes) else name) == channel


class AdminLink:
    """A subscriber connection for replies.

    Kept (tools and benches that send many commands): subscribed once, before the first
    command, to every reply on the channel (`<channel>:reply:*`, which any Redis client
    can read anyway), each reply picked by its id, so a command costs a publish and its
    reply. `one_shot` (the command line): subscribed to the one reply channel only.
    """

    def __init__(self, client: redis.Redis, channel: str, *, one_shot: bool = False) -> None:
        self.client, self.channel, self.one_shot = client, channel, one_shot
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        if not one_shot:
            self.pubsub.psubscribe(f"{channel}:reply:*")
            # confirmed before any command, so no reply can come before the subscription
            self.pubsub.ping()
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                m = self.pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                if m is not None and m.get("type") == "pong":
                    break

    def send(self, req: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Publish, then wait for the one reply (subscribed to it first)."""
        deadline = time.monotonic() + timeout
        reply_to = f"{self.channel}:reply:{req['id']}"
        if self.one_shot:
            self.pubsub.subscribe(reply_to)
        try:
            if self.one_shot:
                self.pubsub.get_message(timeout=0.0)  # reads the confirmation when it is there
            text = json.dumps(req)
            # Nobody received it: the admin may be reconnecting; the same request again is
            # no replay (no one saw it), so retry until the deadline.
            while self.client.publish(self.channel, text) == 0:
                if time.monotonic() + RETRY_S > deadline:
                    return None
                time.sleep(RETRY_S)
            while (left := deadline - time.monotonic()) > 0:
                m = self.pubsub.get_message(timeout=min(left, 1.0))
                if (
                    m is not None
                    and m.get("type") in ("message", "pmessage")
                    and _named(m, reply_to)
                ):
                    answer: dict[str, Any] = json.loads(m["data"])
                    return answer
            return None
        finally:
            if self.one_shot:
                self.pubsub.unsubscribe(reply_to)  # its confirmation is read later (skipped)

    def close(self) -> None:
        self.pubsub.close()


def watch(client: redis.Redis, s: Settings, a: argparse.Namespace) -> int:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(s.admin.events_channel)
    print(f"watching {s.admin.events_channel} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    seen = 0
    try:
        while a.count is None or seen < a.count:
            m = pubsub.get_message(timeout=1.0)
            if m is None or m.get("type") != "message":
                continue
            seen += 1
            try:
                event = json.loads(m["data"])
            except ValueError:
                print(m["data"], flush=True)
                continue
            print(json.dumps(event) if a.json else event_line(event), flush=True)
    finally:
        pubsub.close()
    return 0


# -- readable output -------------------------------------------------------------------------


def event_line(e: dict[str, Any]) -> str:
    ts = e.get("ts")
    when = (
        datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]
        if isinstance(ts, int | float)
        else "?"
    )
    rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("type", "ts"))
    return f"{when} {e.get('type', '?'):<11} {rest}"


def render(cmd: str, result: Any) -> str:
    if cmd == "status" and isinstance(result, dict):
        return render_status(result)
    if cmd == "tree" and isinstance(result, dict):
        return "\n".join(tree_lines(result, 0))
    if isinstance(result, dict):
        return "ok\n" + "\n".join(f"  {k}: {v}" for k, v in result.items())
    return f"ok {result}"


def render_status(st: dict[str, Any]) -> str:
    s = st.get("summary", {})
    lines = [
        f"mode {s.get('mode')} · posture {s.get('posture')} · equity {s.get('equity')} · "
        f"PnL {s.get('pnl')}",
        f"positions {s.get('positions')} · open orders {s.get('open_orders')} · "
        f"feed ticks {s.get('feed_ticks')} · admin {s.get('admin')}",
    ]
    for sym, p in (st.get("execution", {}).get("positions") or {}).items():
        lines.append(f"  {sym}: {p.get('qty')} @ {p.get('avg_price')}")
    feed = st.get("feed", {})
    lines.append(
        "feed " + " ".join(f"{k}={v}" for k, v in feed.items() if not isinstance(v, dict | list))
    )
    lat = st.get("watchdog", {}).get("latency", {}) or {}
    if lat:
        lines.append(f"{'stage':<22}{'n':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
        for stage, v in lat.items():
            lines.append(
                f"{stage:<22}{v.get('count', 0):>7}{v.get('p50_ms', 0):>10.1f}"
                f"{v.get('p95_ms', 0):>10.1f}{v.get('p99_ms', 0):>10.1f}"
            )
    return "\n".join(lines)


def tree_lines(node: dict[str, Any], depth: int) -> list[str]:
    fail_ = node.get("last_failure")
    why = f"  last failure: {fail_.get('reason')}" if isinstance(fail_, dict) else ""
    out = [
        f"{'  ' * depth}{node.get('name')}  {node.get('kind')} {node.get('state')} "
        f"restarts={node.get('restarts', 0)}{why}"
    ]
    for child in node.get("children", []) or []:
        out.extend(tree_lines(child, depth + 1))
    return out
