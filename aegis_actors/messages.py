"""Every message actors exchange: frozen pydantic v2 models, and nothing else.

A message about an event carries its `event_id` and the clock time each stage stamped
on it, so the watchdog can hold each hop against the SLA and `tail` can follow one event
end to end.
"""

from __future__ import annotations

import types
import typing
import uuid
from collections.abc import Callable
from copy import deepcopy
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticUndefined, to_json

_set_attr = object.__setattr__


class Msg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    if TYPE_CHECKING:

        @classmethod
        def trusted(cls, **fields: Any) -> Self:
            """See `_Trusted`."""
            ...

    def replaced(self, **changes: Any) -> Self:
        """A copy with `changes`, unvalidated like `model_copy(update=...)` and cheaper."""
        cls = type(self)
        msg = cls.__new__(cls)
        _set_attr(msg, "__dict__", {**self.__dict__, **changes})
        _set_attr(msg, "__pydantic_fields_set__", self.__pydantic_fields_set__ | changes.keys())
        _set_attr(msg, "__pydantic_extra__", None)
        _set_attr(msg, "__pydantic_private__", None)
        return msg


class _Trusted:
    """`Cls.trusted(**fields)`: a message built by our own code from values already of
    the field types, not validated. On the event path a validated `__init__` costs ~2 us a
    message (pydantic's `model_construct` more); this ~1 us. Every value must be what
    validation would have kept (an enum member, a float, a list or dict the caller gives
    away); input from outside (an LLM answer, a cache document, a request) is always
    validated. An unknown or a missing field raises TypeError, as a call would."""

    def __get__(self, obj: object, cls: type[Msg]) -> Callable[..., Any]:
        return _TRUSTED.get(cls) or _trusted_maker(cls)


_TRUSTED: dict[type, Callable[..., Any]] = {}
_UNSET: Any = object()


def _trusted_maker(cls: type[Msg]) -> Callable[..., Any]:
    """A constructor for `cls` made once: keyword-only arguments in field order (so the
    dump's key order is the validated one's), defaults as declared, factories per call."""
    env: dict[str, Any] = {"cls": cls, "new": object.__new__, "set_attr": _set_attr}
    params: list[str] = []
    items: list[str] = []
    for i, (name, info) in enumerate(cls.model_fields.items()):
        factory = info.default_factory
        if factory is None and isinstance(info.default, list | dict | set):
            factory = partial(deepcopy, info.default)  # a mutable default is per message
        if factory is not None:
            env[f"f{i}"] = factory
            params.append(f"{name}=_UNSET")
            items.append(f"{name!r}: f{i}() if {name} is _UNSET else {name}")
        elif info.default is not PydanticUndefined:
            env[f"d{i}"] = info.default
            params.append(f"{name}=d{i}")
            items.append(f"{name!r}: {name}")
        else:
            params.append(name)
            items.append(f"{name!r}: {name}")
    env["_UNSET"] = _UNSET
    src = (
        f"def make(*, {', '.join(params)}):\n"
        f"    msg = new(cls)\n"
        f"    set_attr(msg, '__dict__', {{{', '.join(items)}}})\n"
        f"    set_attr(msg, '__pydantic_fields_set__', set())\n"
        f"    set_attr(msg, '__pydantic_extra__', None)\n"
        f"    set_attr(msg, '__pydantic_private__', None)\n"
        f"    return msg\n"
    )
    exec(src, env)  # noqa: S102 - generated from the class's own field names
    make: Callable[..., Any] = env["make"]
    _TRUSTED[cls] = make
    return make


if not TYPE_CHECKING:
    Msg.trusted = _Trusted()


def json_of(msg: Msg) -> dict[str, Any]:
    """`msg.model_dump(mode="json")`, equal in every key, value, type and order, at a
    fraction of the serializer's cost when each value is of its field's exact type (as
    our own messages' are; the commander dumps three per decision record). Any other
    value (an int in a float field, a nested model, a float that is not finite where
    JSON mode would make it None) goes to pydantic's serializer, as does a class with a
    field this does not know (`_json_maker`)."""
    return (_JSON.get(type(msg)) or _json_maker(type(msg)))(msg)


def json_text(msg: Msg) -> str:
    """`to_json(json_of(msg)).decode()`, the same text to the byte, in one pass of the
    model's own serializer instead of a dump and a serializer pass over the dump (15-30 %
    fewer instructions for a decision, an analysis). The two differ only where the
    serializer writes `null` for a value the dump's text does not (a float field that
    is not finite: the dump's text has `Infinity`/`NaN`), so a text with more `null`s
    than the message has fields set to None is made the long way; a class `json_of`
    dumps with pydantic's serializer is always made the long way. (One pass of the
    model's serializer still costs ~1.3x a pass over the dump: the store's share of a
    record grows by what the commander no longer spends.)"""
    return text_writer(type(msg))(msg)


def text_writer(cls: type[Msg]) -> Callable[[Any], str]:
    """`json_text` for messages of exactly `cls` (made once)."""
    return _TEXT.get(cls) or _text_maker(cls)


_TEXT: dict[type, Callable[[Any], str]] = {}


def _text_maker(cls: type[Msg]) -> Callable[[Any], str]:
    dump = _JSON.get(cls) or _json_maker(cls)
    env: dict[str, Any] = {"dump": dump, "to_json": to_json}
    src = "def long_way(msg):\n    return to_json(dump(msg)).decode()\n"
    if not isinstance(dump, partial):  # a plain class (json_of's generated dumper)
        env["serialize"] = cls.__pydantic_serializer__.to_json
        nones = " + ".join(
            f"(d[{name!r}] is None)"
            for name, info in cls.model_fields.items()
            if type(None) in typing.get_args(info.annotation)
        )
        src += (
            "def text(msg):\n"
            "    out = serialize(msg)\n"
            "    if b'null' in out:\n"
            "        d = msg.__dict__\n"
            f"        if out.count(b'null') != {nones or 0}:\n"
            "            return long_way(msg)\n"
            "    return out.decode()\n"
        )
    exec(src, env)  # noqa: S102 - generated from the class's own field names
    text: Callable[[Any], str] = env.get("text") or env["long_way"]
    _TEXT[cls] = text
    return text


_JSON: dict[type, Callable[[Any], dict[str, Any]]] = {}
_SCALARS = (str, float, bool, int)
_SLOW = "return slow(msg)"


def _field_code(name: str, ann: Any, env: dict[str, Any]) -> tuple[list[str], str] | None:
    """(the checking statements, the value) for one field's value `v_<name>`, or None
    for a type this does not know. A check that fails hands the message to `slow`."""
    v = f"v_{name}"
    args = typing.get_args(ann)
    origin = typing.get_origin(ann)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = _field_code(name, rest[0], env) if len(rest) == 1 else None
        if inner is None or len(inner[0]) != 1:
            return None
        cond = inner[0][0].removeprefix("if ").removesuffix(f": {_SLOW}")
        return [f"if {v} is not None and {cond}: {_SLOW}"], f"None if {v} is None else {inner[1]}"
    if ann in _SCALARS:
        env[ann.__name__] = ann
        return [f"if type({v}) is not {ann.__name__}: {_SLOW}"], v
    if isinstance(ann, type) and issubclass(ann, StrEnum):
        env[f"E_{name}"] = ann
        return [f"if type({v}) is not E_{name}: {_SLOW}"], f"{v}._value_"
    if origin is dict and args and args[0] is str and args[1] in (float, Any):
        if args[1] is float:  # JSON mode would turn an int into a float
            bad = "type(x) is not float"
        else:  # Any: a scalar JSON mode keeps as it is (a float only when finite)
            bad = (
                "type(x) is not str and not (x is None or type(x) is int or type(x) is bool"
                " or (type(x) is float and x - x == 0.0))"
            )
        return [
            f"if type({v}) is not dict: {_SLOW}",
            f"for k, x in {v}.items():",
            f"    if type(k) is not str or {bad}: {_SLOW}",
        ], f"dict({v})"
    if origin is list and args == (str,):
        return [
            f"if type({v}) is not list: {_SLOW}",
            f"for x in {v}:",
            f"    if type(x) is not str: {_SLOW}",
        ], f"list({v})"
    return None


def _json_maker(cls: type[Msg]) -> Callable[[Any], dict[str, Any]]:
    """A dumper for `cls` made once (see `json_of`): the checks, then one dict literal."""
    slow = partial(cls.__pydantic_serializer__.to_python, mode="json")
    env: dict[str, Any] = {"slow": slow}
    decorators = cls.__pydantic_decorators__
    codes: list[tuple[str, list[str], str]] = []
    plain = not (
        decorators.field_serializers
        or decorators.model_serializers
        or cls.model_computed_fields
        or cls.model_config.get("extra") == "allow"
    )
    for name, info in cls.model_fields.items():
        code = _field_code(name, info.annotation, env)
        if code is None or info.alias or info.serialization_alias or info.exclude:
            plain = False
            break
        codes.append((name, *code))
    if not plain:
        _JSON[cls] = slow
        return slow
    src = (
        "def dump(msg):\n"
        "    d = msg.__dict__\n"
        + "".join(f"    v_{n} = d[{n!r}]\n" for n, _c, _v in codes)
        + "".join(f"    {line}\n" for _n, check, _v in codes for line in check)
        + f"    return {{{', '.join(f'{n!r}: {v}' for n, _c, v in codes)}}}\n"
    )
    exec(src, env)  # noqa: S102 - generated from the class's own field names and types
    dump: Callable[[Any], dict[str, Any]] = env["dump"]
    _JSON[cls] = dump
    return dump


class EventKind(StrEnum):
    TICK = "tick"
    CALENDAR = "calendar"
    NEWS = "news"
    SYSTEM = "system"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    FLAT = "flat"


class Action(StrEnum):
    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"
    CLOSE = "close"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class OrderStatus(StrEnum):
    """The one order vocabulary: messages, ledger, metrics and brokers all use it.

    new -> accepted -> partially_filled -> filled | cancelled | rejected | expired;
    `unknown` (sent, the broker's answer lost) lasts only until reconciliation answers.
    The legal moves are in `aegis_actors/execution/lifecycle.py`.
    """

    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


OPEN_STATUSES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.NEW, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED}
)
"""Statuses under which an order can still fill (and can be cancelled)."""

FINAL_STATUSES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class Posture(StrEnum):
    OFFENSIVE = "offensive"
    GUERRILLA = "guerrilla"
    DEFENSIVE = "defensive"


class TradingMode(StrEnum):
    NORMAL = "normal"
    LIMITED = "limited"
    SAFE = "safe"
    HALTED = "halted"
    SHUTDOWN = "shutdown"

    @property
    def rank(self) -> int:
        return _MODE_RANK[self]

    def allows_entries(self) -> bool:
        return self is _NORMAL  # read per event: an Enum member off its class is ~130 ns

    def allows_exits(self) -> bool:
        return self in _EXITS_ALLOWED


_MODE_RANK = {m: i for i, m in enumerate(TradingMode)}
_NORMAL = TradingMode.NORMAL
_EXITS_ALLOWED = frozenset({TradingMode.NORMAL, TradingMode.LIMITED, TradingMode.SAFE})


class AlertLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    SEVERE = "severe"


class Outcome(StrEnum):
    ORDERED = "ordered"
    HOLD = "hold"
    VETOED = "vetoed"
    REFUSED = "refused"
    FAILED = "failed"
    TIMEOUT = "timeout"


# Stage stamps, in path order.
T0 = "t0"  # gateway detected and normalised the event
CONTEXT = "context"  # context injected; analysis starts
ANALYSIS = "analysis"
VERIFICATION = "verification"
DECISION = "decision"  # commander decided; execute command issued
ORDER_ACCEPTED = "order_accepted"
DONE = "done"


class Stamped(Msg):
    event_id: str
    stamps: dict[str, float] = Field(default_factory=dict)

    def stamp(self, stage: str, t: float) -> Self:
        return self.replaced(stamps={**self.stamps, stage: t})

    def with_stamps(self, stamps: dict[str, float]) -> Self:
        return self.replaced(stamps={**stamps, **self.stamps})


# -- market side -------------------------------------------------------------------------


class Tick(Msg):
    """A price print for pricing positions and paper fills (every tick, never coalesced)."""

    symbol: str
    price: float
    volume: float = 0.0
    ts: float
    open_price: float | None = None


class MarketEvent(Stamped):
    """One trigger entering the pipeline: a tick, a release, a headline, a system event."""

    kind: EventKind = EventKind.TICK
    symbol: str
    price: float | None = None
    volume: float = 0.0
    ts: float
    headline: str = ""
    source: str = "market"


class VolatilityIndex(Msg):
    value: float
    ts: float


class PostureParams(Msg):
    entry_size: float  # fraction of capital per entry
    stop_loss: float  # negative fraction, e.g. -0.015
    take_profit: float
    max_positions: int
    limit_ratio: float  # share of orders sent as limit orders


class PositionView(Msg):
    symbol: str
    qty: float
    avg_price: float
    stop_loss: float | None = None
    take_profit: float | None = None
    posture: Posture | None = None
    opened_at: float | None = None


class Context(Stamped):
    event: MarketEvent
    symbol: str
    prices: list[float]
    price_age_s: float | None = None
    stale: bool = False
    position: PositionView | None = None
    open_positions: int = 0
    capital: float
    posture: Posture
    params: PostureParams
    mode: TradingMode
    session_id: str = ""
    # the rules' indicators of `prices`, computed once by the context loader (roles.rules)
    indicators: dict[str, float] = Field(default_factory=dict)


class Analysis(Stamped):
    symbol: str
    direction: Direction
    expected_move_pct: float
    confidence: float = Field(ge=0.0, le=1.0)
    pattern: str = ""
    risk_score: float = Field(ge=0.0, le=1.0)
    rationale: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)  # backend, model, prompt, tokens, cost


class Verdict(Stamped):
    symbol: str
    approve: bool
    reasons: list[str] = Field(default_factory=list)
    confidence: float = Field(ge=0.0, le=1.0)
    meta: dict[str, Any] = Field(default_factory=dict)


class Decision(Stamped):
    decision_id: str
    symbol: str
    action: Action
    size_fraction: float = Field(ge=0.0, le=1.0)  # of the posture's entry size
    order_type: OrderType = OrderType.LIMIT
    limit_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = ""
    posture: Posture
    reference_price: float
    meta: dict[str, Any] = Field(default_factory=dict)
    # A buy or sell against a held opposite position closes it and enters this side at
    # once (both market orders, the close first); without it such a decision is refused.
    reverse: bool = False


class Order(Msg):
    client_order_id: str
    decision_id: str
    event_id: str
    symbol: str
    side: Side
    qty: float
    order_type: OrderType
    limit_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    intent: str = "entry"  # entry | exit
    posture: Posture | None = None
    status: OrderStatus = OrderStatus.NEW
    created_at: float


class Fill(Msg):
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    fee: float
    ts: float


class EventDone(Stamped):
    """The end of one event's path, whatever the outcome; fed back to the gateway."""

    symbol: str
    outcome: Outcome
    detail: str = ""
    stage: str = ""  # the stage that failed, on failure/timeout


class EventShed(Msg):
    """An event dropped inside the pipeline before any work was done on it (it reached the
    context loader too late to meet its SLA): the gateway frees its symbol and counts it
    as shed by `reason`, like an event shed at the gateway; the watchdog never sees it."""

    event_id: str
    symbol: str
    reason: str


class DecisionRecord(Msg):
    """One event's row of the `decisions` ledger (the store) and its figures (the watchdog).

    It carries the roles' answers themselves: the store writes each as the JSON text of
    its JSON dump (`json_text`, once, on the store's thread), the watchdog reads the few
    values it needs; the commander dumps nothing."""

    decision_id: str
    event_id: str
    symbol: str
    analysis: Analysis | None
    verdict: Verdict | None
    decision: Decision | None
    vetoed: bool
    confidence: float | None
    outcome: str
    latency_ms: dict[str, float]
    created_at: float
    # per role (analyst, verifier, commander): what answered and what it cost
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    tokens: dict[str, dict[str, int]] = Field(default_factory=dict)
    cost_usd: float = 0.0
    analysis_confidence: float | None = None
    verdict_confidence: float | None = None


class Ticks(Msg):
    """A batch of validated prints for execution, in arrival order (never coalesced).

    One message per feed batch instead of one per print keeps ingestion lean at tens of
    thousands of prints a second. Items: (symbol, price, volume, ts, open_price or None).
    """

    ticks: list[tuple[str, float, float, float, float | None]]


class ReplayBar(Msg):
    """One historical bar for the replay feed (backtest): the driver owns the pace, the
    market actor admits the close as a print that carries the bar's open for fills."""

    symbol: str
    ts: float  # the bar's close time: the clock stands here when it arrives
    open: float
    high: float
    low: float
    close: float
    volume: float
    event: bool = True  # False: price the bar (fills, marks) but raise no decision event


# -- control side ------------------------------------------------------------------------


class RequestMode(Msg):
    """Ask the watchdog to move the trading mode; automatic requests may only go up.
    Answered (when asked) by `ModeReply`."""

    target: TradingMode
    reason: str
    operator: bool = False


class ModeChange(Msg):
    old: TradingMode
    new: TradingMode
    reason: str
    ts: float
    operator: bool = False


class SetPosture(Msg):
    """Operator override (`auto` hands control back to evaluation), or an emergency force.
    Answered (when asked) by `PostureReply`."""

    posture: Posture | None  # None = auto
    reason: str
    operator: bool = False  # operator: an override; otherwise a forced move held for a cool-down


class PostureChange(Msg):
    old: Posture
    new: Posture
    reason: str
    ts: float
    params: PostureParams


class Alert(Msg):
    alert_id: str
    level: AlertLevel
    kind: str
    message: str
    ts: float
    event_id: str | None = None

    @classmethod
    def new(
        cls, level: AlertLevel, kind: str, message: str, ts: float, event_id: str | None = None
    ) -> Alert:
        """A fresh alert with its own id (what `ack` names)."""
        return cls(
            alert_id="al-" + uuid.uuid4().hex[:12],
            level=level,
            kind=kind,
            message=message,
            ts=ts,
            event_id=event_id,
        )


class Heartbeat(Msg):
    seq: int
    ts: float


class HeartbeatAck(Msg):
    name: str
    seq: int
    ts: float


class GetStatus(Msg):
    """Ask any actor for its status: a JSON-able dict, a document for people (admin
    `status`, the dashboard); code that needs a figure asks a typed question instead."""


class PositionClosed(Msg):
    """A position went flat; `reason` is stop_loss | take_profit | close | liquidation."""

    symbol: str
    reason: str
    pnl: float
    pnl_pct: float
    ts: float


class StageFailure(Msg):
    """A role or stage failed an event (timeout, bad answer); counts toward posture rules."""

    role: str
    event_id: str
    reason: str
    ts: float


class RoleLoad(Msg):
    """A role's worker pool crossed its high or low mark (told to the gateway).

    `saturated`: as many HTTP calls are out or queued as the pool has workers to carry
    them (nearly), so the gateway holds new events back instead of letting them queue
    inside the role past their stage budget. `in_flight` counts calls handed to the pool
    and not yet answered; `capacity` is how many the role admits now (its design rate
    times its API's measured latency, with headroom, at most its workers).
    """

    role: str
    saturated: bool
    in_flight: int
    capacity: int
    ts: float


class AckAlert(Msg):
    """An operator acknowledged an alert (admin `ack`): its escalation stops. Answered
    (when asked) by `AckReply`."""

    alert_id: str
    by: str = "operator"
    ts: float = 0.0  # when it was acknowledged (set by the watchdog for the ledger)


class ConfirmPrice(Msg):
    """Execution asks the verifier to confirm a symbol whose broker and feed prices
    differ by 0.5-2 % (SPEC 4.3) before any order on it is sent."""

    request_id: str
    symbol: str
    broker_price: float
    feed_price: float
    diff_pct: float
    ts: float


class PriceConfirmation(Msg):
    """The verifier's answer to `ConfirmPrice`."""

    request_id: str
    symbol: str
    approve: bool
    reason: str
    ts: float


# -- store side --------------------------------------------------------------------------


class WriteOrder(Msg):
    """Write-ahead: asked before the broker is called; the reply says whether it is durable.

    `deadline` (wall-clock epoch seconds, as the asker's timeout runs on wall time): past
    it the asker has given up and will not send, so the store does not write it either.
    Answered by `WriteAheadAck`.
    """

    order: Order
    deadline: float | None = None


class WriteAheadExpired(Msg):
    """Told to the store when a write-ahead was not confirmed in time and the order was
    not sent: a row the store wrote late (still `new`) becomes `cancelled` with `reason`."""

    client_order_id: str
    reason: str
    ts: float


class OrderUpdate(Msg):
    client_order_id: str
    status: OrderStatus
    ts: float
    broker_order_id: str | None = None
    filled_qty: float | None = None
    avg_fill_price: float | None = None
    error: str | None = None


class RecordFill(Msg):
    fill: Fill


class PositionUpdate(Msg):
    """The position after a fill; qty 0 removes it."""

    symbol: str
    qty: float
    avg_price: float
    ts: float
    opened_at: float | None = None
    posture: Posture | None = None
    stop_loss: float | None = None
    take_profit: float | None = None


class SessionSave(Msg):
    session_id: str
    opened_at: float
    state: dict[str, Any]
    ts: float
    closed_at: float | None = None
    full: bool = False


class Snapshot(Msg):
    kind: str
    data: dict[str, Any]
    ts: float


class LoadState(Msg):
    """Context loader's durable read on a cache miss. Answered by `DurableState`."""

    symbol: str


class LoadLedger(Msg):
    """Execution's start-up read: the orders not yet final and each one's recorded fills.
    Answered by `Ledger`."""


class StoreHealth(Msg):
    """Ask the store whether the durable store is up and how much waits in the spool.
    Answered by `StoreHealthReply`."""


class Proposal(Stamped):
    """Sequential verification: the analyst's result sent on for checking."""

    context: Context
    analysis: Analysis


class SupervisorEvent(Msg):
    """A restart, an escalation or an abandoned child, as the supervisors reported it."""

    data: dict[str, Any]


class KvGet(Msg):
    """Asked of the store: the durable value under `key` (JSON), or None. Answered by
    `KvValue`."""

    key: str


class KvPut(Msg):
    """Told to the store: keep `value` (JSON-able) under `key`, replacing the old one."""

    key: str
    value: Any
    ts: float


class CancelOpenOrders(Msg):
    """Asked of execution (close-day over the admin channel): cancel every unfilled order.

    Answered by `CancelReply`: the orders cancelled, and the positions carried with their
    last price.
    """

    reason: str


# -- replies to asks ----------------------------------------------------------------------
#
# Every ask is answered by a model of its own, checked where it is received (`expect`):
# a caller reads attributes, never a string to parse or a dict to look into, and an
# answer of the wrong type is a bug that fails loudly there. `GetStatus` is the exception:
# its answer is a status document for people (admin `status`, the dashboard), not for code.


class WriteAhead(StrEnum):
    """What became of a write-ahead (`WriteOrder`)."""

    NEW = "new"  # durable now: the order may be sent
    SPOOLED = "spooled"  # an exit while the store is down: in the local spool, may be sent
    DUPLICATE = "duplicate"  # the ledger already holds this id
    CONFLICT = "conflict"  # the ledger holds this id for another order: never sent
    EXPIRED = "expired"  # past its deadline: not written, never sent
    ERROR = "error"  # not written (store down, a failed write, no answer): never sent


class WriteAheadAck(Msg):
    """The store's answer to `WriteOrder` (or the asker's, when none came in time)."""

    status: WriteAhead
    detail: str = ""  # why, for every status but new/duplicate/spooled

    @property
    def written(self) -> bool:
        """The order may be sent: it is durable, or spooled locally (an exit)."""
        return self.status in (WriteAhead.NEW, WriteAhead.SPOOLED)

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else str(self.status)


class DurableState(Msg):
    """The store's answer to `LoadState`: positions (rows by symbol), the last mode, the
    posture document, and the last open commander session."""

    positions: dict[str, dict[str, Any]] = Field(default_factory=dict)
    mode: TradingMode | None = None
    posture: dict[str, Any] | None = None
    session: dict[str, Any] | None = None  # session_id, opened_at, saved_at, state


class Ledger(Msg):
    """The store's answer to `LoadLedger`: order rows to check against the broker, each
    one's recorded fill qty and fill ids, and exit attempts per symbol."""

    orders: list[dict[str, Any]] = Field(default_factory=list)
    filled: dict[str, float] = Field(default_factory=dict)
    fill_ids: dict[str, list[str]] = Field(default_factory=dict)
    exit_attempts: dict[str, int] = Field(default_factory=dict)


class StoreHealthReply(Msg):
    """The store's answer to `StoreHealth`."""

    up: bool
    why: str = ""  # the outage, when down
    spool: int = 0  # writes waiting in the local spool


class KvValue(Msg):
    """The store's answer to `KvGet`: the value kept under `key` (None: none, or unreadable)."""

    key: str
    value: Any = None


class GetMode(Msg):
    """Ask the watchdog for the trading mode in force (answered by `ModeReply`)."""


class ModeReply(Msg):
    """The watchdog's answer to `RequestMode` and `GetMode`: the mode in force after it;
    `ok` False (a refused move) says why in `error`."""

    ok: bool
    mode: TradingMode
    error: str = ""


class GetPosture(Msg):
    """Ask the posture actor for the posture in force (answered by `PostureReply`)."""


class PostureReply(Msg):
    """The posture actor's answer to `SetPosture`: the posture in force, and the
    operator's override (None: automatic)."""

    posture: Posture
    override: Posture | None = None


class GetFlow(Msg):
    """Ask the market actor how many events it raised and how many are in the pipeline
    or waiting for a place (answered by `FlowReply`): a replay's "is this bar done"."""


class FlowReply(Msg):
    events: int  # raised since start
    inflight: int  # in the pipeline now
    waiting: int  # held at the gateway for a place

    @property
    def idle(self) -> bool:
        return not self.inflight and not self.waiting


class GetOutcomes(Msg):
    """Ask the watchdog how the events so far ended (answered by `OutcomesReply`)."""


class OutcomesReply(Msg):
    outcomes: dict[str, int]  # Outcome value -> events


class AckReply(Msg):
    """The watchdog's answer to `AckAlert`."""

    ok: bool
    alert_id: str
    escalation_step: int = 0
    error: str = ""


class CancelReply(Msg):
    """Execution's answer to `CancelOpenOrders`: what was cancelled (client id, and
    symbol/side/qty when known), what is still open, and the last price of each position
    carried over."""

    cancelled: list[dict[str, Any]] = Field(default_factory=list)
    still_open: list[str] = Field(default_factory=list)
    marks: dict[str, float] = Field(default_factory=dict)


class WrongReply(TypeError):
    """An ask answered with another type than its reply model: a bug, never parsed."""


ReplyT = TypeVar("ReplyT")


def expect(answer: object, reply: type[ReplyT], name: str, message: object) -> ReplyT:
    """`answer` if it is a `reply`, else `WrongReply` naming who answered what."""
    if isinstance(answer, reply):
        return answer
    raise WrongReply(
        f"{name} answered {type(message).__name__} with {type(answer).__name__}, "
        f"expected {reply.__name__}"
    )
