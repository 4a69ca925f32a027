"""The admin actor: runs operator commands that passed the gate, and publishes events.

Requests arrive as tells from the subscriber thread (already checked); each command
asks the actor that owns the matter (watchdog for the mode, posture for the posture,
a supervisor for a restart), so the admin never changes another actor's state itself.
Every command gets exactly one reply on `<channel>:reply:<id>`.

`status` and `tree` are answered from a snapshot already serialised (admin/snapshot.py),
right on the subscriber thread once the gate has passed them: a reply costs one publish,
not eleven asks, a histogram scan and a hop through this actor's mailbox.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pykka
import redis

from aegis_actors.admin.channel import Publisher, Subscriber, connect
from aegis_actors.admin.gate import READ_ONLY, Gate, run_state
from aegis_actors.admin.protocol import Request, reply_channel
from aegis_actors.admin.reload import apply
from aegis_actors.admin.snapshot import Snapshots, Texts
from aegis_actors.base import AegisActor
from aegis_actors.messages import (
    AckAlert,
    AckReply,
    CancelOpenOrders,
    CancelReply,
    ModeReply,
    Posture,
    PostureReply,
    ReplyT,
    RequestMode,
    SetPosture,
    StoreHealth,
    StoreHealthReply,
    TradingMode,
)
from aegis_actors.redact import redact
from aegis_actors.runtime import EXECUTION, POSTURE, STORE, WATCHDOG
from aegis_actors.settings import SettingsError, load_settings
from aegis_actors.status import brief, collect_status

ASK_TIMEOUT_S = 5.0
RESTART_TIMEOUT_S = 15.0  # the supervisor waits for the old instance to stop first
REFRESH_TIMEOUT_S = 1.0  # a part that does not answer within this shows as an error


@dataclass(frozen=True)
class _Command:
    request: Request


@dataclass(frozen=True)
class Prepared:
    """A command result already serialised as JSON text (the snapshot)."""

    text: str


class Refused(Exception):
    """A command that could not be carried out; its text is the reply's one-line error."""


class Admin(AegisActor):
    def on_start(self) -> None:
        s = self.settings
        self.channel = s.admin.channel
        self.events_channel = s.admin.events_channel
        self.secret = s.admin_secret.get_secret_value()
        self.state = run_state(self.metrics)
        am = self.state.metrics
        self.client = connect(s.store.redis_url)
        # the gate runs on the subscriber thread only: a connection of its own
        self.gate_client = connect(s.store.redis_url, single=True)
        self.replies = Publisher(
            self.client,
            "admin-replies",
            on_drop=am.dropped.labels("reply").inc,
            on_error=self.redis_error,
        )
        self.events = Publisher(
            self.client,
            "admin-events",
            limit=10_000,
            on_drop=am.dropped.labels("event").inc,
            on_error=self.redis_error,
        )
        ref = self.actor_ref

        def deliver(req: Request) -> None:
            try:
                ref.tell(_Command(req))
            except pykka.ActorDeadError:
                self.log.warning("admin stopped before running {} (id={})", req.cmd, req.id)

        self.snapshots = Snapshots(self.build_snapshot, s.admin.snapshot_every_s)
        gate = Gate(
            channel=self.channel,
            secret=self.secret,
            clock=self.clock,
            state=self.state,
            replies=self.replies,
            client=self.gate_client,
            deliver=deliver,
            answer=self.answer_read_only,
            answered=lambda req: self.count(req.cmd, "ok"),
        )
        self.sub = Subscriber(
            s.store.redis_url,
            self.channel,
            gate,
            self.redis_error,
            gate.idle,
            on_repeat=gate.repeat,
            on_not_object=gate.not_requests,
        )
        self.replies.start()
        self.events.start()
        self.rt.event_sinks.append(self.publish_event)
        self.snapshots.start()
        self.sub.start()
        if not self.secret:
            self.log.error(
                "admin: AEGIS_ADMIN_SECRET is not set; every command on {} will be refused",
                self.channel,
            )

    def stopping(self) -> None:
        if not hasattr(self, "sub"):
            return
        if self.publish_event in self.rt.event_sinks:
            self.rt.event_sinks.remove(self.publish_event)
        self.sub.stop()
        self.snapshots.stop()
        self.replies.stop()
        self.events.stop()
        self.client.close()
        self.gate_client.close()

    # -- Redis side --------------------------------------------------------------------

    def publish_event(self, event: dict[str, Any]) -> None:
        """Event sink: queue for `aegis:events` (never blocks the emitting actor), and have
        the snapshot rebuilt, so `status` shows the change at once."""
        self.events.put(self.events_channel, json.dumps(redact(event), default=str))
        self.snapshots.poke()

    # -- the snapshot ------------------------------------------------------------------

    def build_snapshot(self) -> Texts:
        """Every actor's status (asked at once) and the tree, each answer serialised once
        (redacted once: any Redis client can read the reply channel, so no password
        inside a URL/DSN leaves)."""
        now = self.clock.now()
        out = collect_status(self.rt, timeout=REFRESH_TIMEOUT_S)
        out["summary"]["admin"] = "running"  # (the directory may not list it yet at start)
        out["settings"] = self.rt.settings.redacted()
        out["snapshot_ts"] = now
        full = redact(out)
        tree = compact(redact(self.with_urns(self.rt.tree()))) if self.rt.tree else ""
        # closed per reply, with the admin's live counts
        return Texts(status=compact(brief(full))[:-1], full=compact(full)[:-1], tree=tree)

    def read_only_text(self, cmd: str, args: dict[str, Any]) -> str | None:
        """The result of `status` or `tree` from the snapshot; None when there is none yet."""
        texts = self.snapshots.texts
        if not texts.status:
            return None
        if cmd == "tree":
            return texts.tree or None
        admin = compact(redact(self.status()))
        return f'{texts.full if args.get("full") else texts.status},"admin":{admin}}}'

    def answer_read_only(self, req: Request) -> str | None:
        """Gate hook, on the subscriber thread: the reply to `status`/`tree` from the
        snapshot (the gate publishes it); None sends the command the usual way."""
        if req.cmd not in READ_ONLY:
            return None
        text = self.read_only_text(req.cmd, req.args)
        if text is None:
            return None  # no snapshot yet: the actor builds one and answers
        return reply_text(req, Prepared(text))

    def redis_error(self, what: str) -> None:
        self.state.metrics.redis_errors.inc()
        self.log.warning("admin: Redis error: {}", what)

    def reply(self, req: Request, body: dict[str, Any]) -> None:
        result = body.get("result")
        if isinstance(result, Prepared):
            text = reply_text(req, result)
        else:
            # Any Redis client can read the reply channel: no password inside a URL/DSN leaves.
            text = json.dumps({"id": req.id, **redact(body)}, default=str)
        try:
            self.client.publish(reply_channel(self.channel, req.id), text)
        except redis.RedisError as exc:
            self.redis_error(f"reply to {req.id} lost: {type(exc).__name__}: {exc}")

    # -- commands ----------------------------------------------------------------------

    def on__Command(self, msg: _Command) -> None:
        req = msg.request
        audit = self.log.bind(security=True, admin_id=req.id)
        try:
            result = getattr(self, f"cmd_{req.cmd}")(req)
        except Refused as exc:
            self.count(req.cmd, "refused")
            audit.warning("admin {} {} refused: {}", req.cmd, req.args, exc)
            self.reply(req, {"ok": False, "error": str(exc)})
            return
        except Exception as exc:  # a command must never take the admin down
            self.count(req.cmd, "error")
            audit.exception("admin {} failed", req.cmd)
            self.reply(
                req, {"ok": False, "error": f"{req.cmd} failed: {type(exc).__name__}: {exc}"}
            )
            return
        self.count(req.cmd, "ok")
        audit.info("admin {} {} done", req.cmd, req.args)
        if req.cmd not in READ_ONLY:
            self.snapshots.refresh()  # the next status shows what this command changed
        self.reply(req, {"ok": True, "result": result})
        if req.cmd == "shutdown":
            self.rt.emit("shutdown", reason=f"admin command {req.id}", operator=True)
            self.rt.shutdown.set()

    def count(self, cmd: str, outcome: str) -> None:
        self.state.metrics.commands.labels(cmd, outcome).inc()
        with self.state.lock:
            key = f"{cmd}:{outcome}"
            self.state.commands[key] = self.state.commands.get(key, 0) + 1

    def ask_owner(
        self, name: str, message: Any, reply: type[ReplyT], timeout: float = ASK_TIMEOUT_S
    ) -> ReplyT:
        try:
            return self.ask(name, message, timeout, reply)
        except pykka.Timeout:
            raise Refused(f"{name} did not answer within {timeout:g} s") from None
        except LookupError as exc:
            raise Refused(str(exc)) from None

    def cmd_status(self, req: Request) -> Prepared:
        if not self.snapshots.ready():
            self.snapshots.refresh()
        return Prepared(self.read_only_text(req.cmd, req.args) or "{}")

    def cmd_tree(self, req: Request) -> Prepared:
        if self.rt.tree is None:
            raise Refused("the tree is not started yet")
        if not self.snapshots.texts.tree:
            self.snapshots.refresh()
        return Prepared(self.read_only_text(req.cmd, req.args) or "{}")

    def with_urns(self, node: dict[str, Any]) -> dict[str, Any]:
        """Each live node's actor urn: a restarted actor shows a new one."""
        ref = self.rt.directory.get(str(node.get("name")))
        node["urn"] = ref.actor_urn if ref is not None else None
        for child in node.get("children", []) or []:
            self.with_urns(child)
        return node

    def cmd_posture(self, req: Request) -> dict[str, Any]:
        value = req.args["set"]
        posture = None if value == "auto" else Posture(value)
        msg = SetPosture(posture=posture, reason=f"admin command {req.id}", operator=True)
        answer = self.ask_owner(POSTURE, msg, PostureReply)
        return {
            "posture": answer.posture.value,
            "override": answer.override.value if answer.override else "auto",
        }

    def cmd_mode(self, req: Request) -> dict[str, Any]:
        msg = RequestMode(
            target=TradingMode(req.args["set"]), reason=f"admin command {req.id}", operator=True
        )
        answer = self.ask_owner(WATCHDOG, msg, ModeReply)
        if not answer.ok:
            raise Refused(f"mode {req.args['set']} refused: {answer.error}")
        return {"mode": answer.mode.value}

    def cmd_restart(self, req: Request) -> dict[str, Any]:
        name = req.args["actor"]
        if name == self.name:
            raise Refused("admin cannot restart itself over its own channel")
        if self.rt.tree is None:
            raise Refused("the tree is not started yet")
        tree = self.rt.tree()
        if name == tree.get("name"):
            raise Refused(f"{name} is the root; use shutdown")
        parent = parent_of(tree, name)
        if parent is None:
            raise Refused(f"no actor named {name!r} in the tree")
        ref = self.rt.directory.get(parent)
        if ref is None:
            raise Refused(f"{name}'s supervisor {parent} is not running")
        try:
            ref.proxy().restart_child(name).get(timeout=RESTART_TIMEOUT_S)
        except pykka.Timeout:
            raise Refused(
                f"{parent} did not restart {name} within {RESTART_TIMEOUT_S:g} s"
            ) from None
        except RuntimeError as exc:
            raise Refused(f"restart {name} refused: {exc}") from None
        self.log.warning("operator restart of {} (supervisor {})", name, parent)
        return {"actor": name, "supervisor": parent}

    def cmd_ack(self, req: Request) -> dict[str, Any]:
        answer = self.ask_owner(WATCHDOG, AckAlert(alert_id=req.args["alert"]), AckReply)
        if not answer.ok:
            raise Refused(f"ack {req.args['alert']} refused: {answer.error}")
        return {"alert": answer.alert_id, "ok": True, "escalation_step": answer.escalation_step}

    def cmd_reload(self, _req: Request) -> dict[str, Any]:
        source = self.settings.source_file
        try:
            fresh = load_settings(source)
        except SettingsError as exc:
            raise Refused(f"reload refused: {exc}") from None
        applied, refused = apply(self.rt.settings, fresh)
        if refused:
            raise Refused(
                "reload refused, nothing applied: cannot change while running: "
                + ", ".join(refused)
                + " (restart the process for these)"
            )
        if applied:
            self.log.warning("settings reloaded from {}: {}", source or "environment", applied)
        return {"file": str(source) if source else None, "changed": applied}

    def cmd_close_day(self, req: Request) -> dict[str, Any]:
        """close-day's broker step, done by the process that owns the broker."""
        answer = self.ask_owner(
            EXECUTION,
            CancelOpenOrders(reason=f"close-day (admin {req.id})"),
            CancelReply,
            RESTART_TIMEOUT_S,
        )
        # The store's mailbox is FIFO: once this ask returns, the cancellations are written.
        self.ask_owner(STORE, StoreHealth(), StoreHealthReply)
        return answer.model_dump(mode="json")

    def cmd_shutdown(self, _req: Request) -> dict[str, Any]:
        self.log.warning("shutdown requested over the admin channel")
        return {"stopping": True}

    def status(self) -> dict[str, Any]:
        with self.state.lock:
            refused, commands = dict(self.state.refused), dict(self.state.commands)
        return {
            "channel": self.channel,
            "events_channel": self.events_channel,
            "listening": self.sub.subscribed.is_set() if hasattr(self, "sub") else False,
            "secret": "set" if self.secret else "missing (every command refused)",
            "refused": refused,
            "refused_total": sum(refused.values()),
            "commands": commands,
        }


def parent_of(node: dict[str, Any], name: str) -> str | None:
    """The name of the supervisor whose direct child is `name`, if any."""
    for child in node.get("children", []) or []:
        if child.get("name") == name:
            return str(node.get("name"))
        found = parent_of(child, name)
        if found is not None:
            return found
    return None


def reply_text(req: Request, result: Prepared) -> str:
    return f'{{"id": {json.dumps(req.id)}, "ok": true, "result": {result.text}}}'


def compact(doc: Any) -> str:
    """JSON without spaces: the snapshot is sent often, and parsed by every client."""
    return json.dumps(doc, default=str, separators=(",", ":"))
