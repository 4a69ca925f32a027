"""The admin wire protocol: canonical JSON, HMAC-SHA256 signatures, request checks.

Pure functions with no Redis and no actors, so every refusal is unit-tested and other
tools can reproduce a signature from this file alone. Checks run cheapest first and the
signature before anything that depends on trusting the sender.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_BYTES = 16 * 1024  # a real request is a few hundred bytes
TS_WINDOW_S = 30.0
MAX_SEEN_IDS = 100_000
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SIG = re.compile(r"^[0-9a-f]{64}$")

MODES = ("normal", "limited", "safe", "halted")
POSTURES = ("offensive", "guerrilla", "defensive", "auto")


def canonical(cmd: str, args: Mapping[str, Any], id_: str, ts: float) -> bytes:
    """The signed bytes: JSON of {args, cmd, id, ts}, sorted keys, separators ',' ':'.

    Python's `json.dumps` defaults otherwise (ASCII escapes for non-ASCII text).
    """
    body = {"args": args, "cmd": cmd, "id": id_, "ts": ts}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(secret: str, cmd: str, args: Mapping[str, Any], id_: str, ts: float) -> str:
    return hmac.new(
        secret.encode("utf-8"), canonical(cmd, args, id_, ts), hashlib.sha256
    ).hexdigest()


def verify(secret: str, cmd: str, args: Mapping[str, Any], id_: str, ts: float, sig: str) -> bool:
    """Constant-time comparison, so timing leaks nothing about the right signature."""
    return hmac.compare_digest(sign(secret, cmd, args, id_, ts), sig)


def request(secret: str, cmd: str, args: Mapping[str, Any] | None, ts: float) -> dict[str, Any]:
    """A signed request ready to publish (what the `admin` command line sends)."""
    a = dict(args or {})
    id_ = str(uuid.uuid4())
    return {"id": id_, "cmd": cmd, "args": a, "ts": ts, "sig": sign(secret, cmd, a, id_, ts)}


def reply_channel(channel: str, id_: str) -> str:
    return f"{channel}:reply:{id_}"


# -- argument checks, one per command --------------------------------------------------------

ArgCheck = Callable[[dict[str, Any]], str | None]  # None when fine, else the one-line reason


def _no_args(args: dict[str, Any]) -> str | None:
    return f"takes no arguments (got {sorted(args)})" if args else None


def _one_of(key: str, allowed: tuple[str, ...]) -> ArgCheck:
    def check(args: dict[str, Any]) -> str | None:
        extra = sorted(set(args) - {key})
        if extra:
            return f"unexpected argument(s) {extra}"
        value = args.get(key)
        if value not in allowed:
            return f"'{key}' must be one of {'|'.join(allowed)} (got {_short(value)})"
        return None

    return check


def _flag(key: str) -> ArgCheck:
    """An optional true/false switch, and nothing else."""

    def check(args: dict[str, Any]) -> str | None:
        extra = sorted(set(args) - {key})
        if extra:
            return f"unexpected argument(s) {extra}"
        if key in args and not isinstance(args[key], bool):
            return f"'{key}' must be true or false (got {_short(args[key])})"
        return None

    return check


def _name(key: str) -> ArgCheck:
    def check(args: dict[str, Any]) -> str | None:
        extra = sorted(set(args) - {key})
        if extra:
            return f"unexpected argument(s) {extra}"
        value = args.get(key)
        if not isinstance(value, str) or not _ID.fullmatch(value):
            return f"'{key}' must be a name of 1-64 letters, digits or ._:- (got {_short(value)})"
        return None

    return check


COMMANDS: dict[str, ArgCheck] = {
    "status": _flag("full"),  # {"full": true}: every part in full, the settings, the tree
    "tree": _no_args,
    "posture": _one_of("set", POSTURES),
    "mode": _one_of("set", MODES),
    "restart": _name("actor"),
    "ack": _name("alert"),
    "reload": _no_args,
    "shutdown": _no_args,
    "close_day": _no_args,  # close-day's broker step: cancel unfilled orders
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- the request check -----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    id: str
    cmd: str
    args: dict[str, Any]
    ts: float


@dataclass(frozen=True)
class Refusal:
    reason: str  # metric label: too_large, not_json, ..., bad_args
    error: str  # the one line sent back
    id: str | None = None  # None: no usable id, so nowhere to reply
    cmd: str | None = None


@dataclass
class SeenIds:
    """Ids accepted recently, forgotten once their `ts` has left the window.

    An id older than the window is refused as stale anyway, so memory is bounded by the
    rate of correctly signed requests; past `limit` the check fails closed.
    """

    window_s: float = TS_WINDOW_S
    limit: int = MAX_SEEN_IDS
    _expiry: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, id_: str, ts: float, now: float) -> str | None:
        """Record `id_`; the refusal reason if it was seen (or there is no room)."""
        if id_ in self._expiry:
            return "replay"
        if len(self._expiry) >= self.limit:
            self._expiry = {k: v for k, v in self._expiry.items() if v >= now}
            if len(self._expiry) >= self.limit:
                return "replay_cache_full"
        self._expiry[id_] = max(ts, now) + self.window_s
        return None


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


_FIELDS = frozenset({"id", "cmd", "args", "ts", "sig"})


def _shape_refusal(
    msg: dict[str, Any], id_: str, cmd: Any, args: Any, ts: Any, sig: Any
) -> Refusal | None:
    """The precise one-line reason a request is malformed (the slow path)."""
    shown = cmd if isinstance(cmd, str) and len(cmd) <= 32 else None
    for ok, what in (
        (isinstance(cmd, str) and 0 < len(cmd) <= 32, "'cmd' must be a string of 1-32 chars"),
        (isinstance(args, dict), "'args' must be a JSON object"),
        (_finite_number(ts), "'ts' must be a number (unix seconds)"),
        (isinstance(sig, str), "'sig' is missing"),
    ):
        if not ok:
            return Refusal("bad_shape", f"malformed request: {what}", id_, shown)
    extra = sorted(set(msg) - _FIELDS)
    if extra:
        return Refusal("bad_shape", f"malformed request: unknown field(s) {extra}", id_, shown)
    return None


def check(raw: bytes | str, *, secret: str, now: float, seen: SeenIds) -> Request | Refusal:
    """Everything a request must pass, cheapest first; the signature before trust."""
    if len(raw) > MAX_BYTES:
        return Refusal("too_large", f"request larger than {MAX_BYTES} bytes")
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Refusal("not_json", "request is not JSON")
    if not isinstance(msg, dict):
        return Refusal("not_object", "request is not a JSON object")
    id_ = msg.get("id")
    if type(id_) is not str or not _ID.fullmatch(id_):
        return Refusal("bad_id", "'id' must be a string of 1-64 letters, digits or ._:-")
    cmd, args, ts, sig = msg.get("cmd"), msg.get("args", {}), msg.get("ts"), msg.get("sig")
    well_formed = (  # the common case in one expression: a flood pays for no more
        type(cmd) is str
        and 0 < len(cmd) <= 32
        and type(args) is dict
        and type(sig) is str
        and (type(ts) is int or type(ts) is float)
        and math.isfinite(ts)
        and msg.keys() <= _FIELDS
    )
    if not well_formed:
        shape = _shape_refusal(msg, id_, cmd, args, ts, sig)
        if shape is not None:
            return shape
    assert isinstance(cmd, str) and isinstance(args, dict) and isinstance(sig, str)
    assert isinstance(ts, int | float)
    if not secret:
        return Refusal(
            "no_secret", "admin disabled: AEGIS_ADMIN_SECRET is not set for the process", id_, cmd
        )
    if not _SIG.fullmatch(sig) or not verify(secret, cmd, args, id_, ts, sig):
        return Refusal("bad_signature", "bad signature", id_, cmd)
    off = float(ts) - now
    if abs(off) > TS_WINDOW_S:
        return Refusal(
            "stale_ts",
            f"ts is {off:+.1f} s off this process's clock (limit {TS_WINDOW_S:g} s)",
            id_,
            cmd,
        )
    seen_why = seen.add(id_, float(ts), now)
    if seen_why == "replay":
        return Refusal("replay", f"id {id_} was already used (replay refused)", id_, cmd)
    if seen_why is not None:
        return Refusal(seen_why, "too many recent requests to check for replay; retry", id_, cmd)
    arg_check = COMMANDS.get(cmd)
    if arg_check is None:
        known = ", ".join(sorted(COMMANDS))
        return Refusal(
            "unknown_command", f"unknown command {_short(cmd)} (known: {known})", id_, cmd
        )
    why = arg_check(args)
    if why is not None:
        return Refusal("bad_args", f"bad arguments for {cmd}: {why}", id_, cmd)
    return Request(id_, cmd, args, float(ts))
