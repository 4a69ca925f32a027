"""Wire formats of the market feeds, decoded into plain prints (no validation here).

Two protocols: Alpaca's market-data stream (JSON arrays of objects tagged "T": `t` trade,
`q` quote, `b` bar, and the control tags `success`, `subscription`, `error`) and a plain
JSON one (`{"symbol","price","volume","ts"}` per message or per array item) for feeds of
one's own. Decoding never raises on bad input: it yields a reason instead, so the market
actor can count it and go on with the rest of the frame.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

# One decoded item: ("print", symbol, price, volume, ts, open_price) for market data,
# ("control", tag, payload) for protocol messages, ("bad", reason, raw) for what is unusable.
Item = tuple[Any, ...]

_SECONDS: dict[str, float] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch seconds (prints repeat them)
_SECONDS_MAX = 4096
BAR_SPAN_S = 60.0  # Alpaca minute bars are stamped at the minute's start; they close 60 s on


def parse_ts(value: Any) -> float | None:
    """Epoch seconds from a number or an RFC 3339 text (nanoseconds allowed); None if bad."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or len(value) < 20 or value[10] != "T":
        return None
    head, rest = value[:19], value[19:]
    base = _SECONDS.get(head)
    if base is None:
        try:
            base = datetime.fromisoformat(head + "+00:00").timestamp()
        except ValueError:
            return None
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        _SECONDS[head] = base
    if rest == "Z":
        return base
    if rest.endswith("Z") and rest[0] == "." and rest[1:-1].isdigit():
        digits = rest[1:-1]
        return base + int(digits) / 10 ** len(digits)
    try:  # an explicit offset: the slow, general path
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def decode_frame(text: str | bytes) -> list[Any] | str:
    """The frame's JSON objects as a list, or the reason it is unusable."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return "not_json"
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    return "bad_frame"


def alpaca_item(obj: Any) -> Item:
    """One object of an Alpaca stream frame."""
    if not isinstance(obj, dict):
        return ("bad", "bad_item", obj)
    tag = obj.get("T")
    if tag == "t":
        ts = parse_ts(obj.get("t"))
        return ("print", obj.get("S"), obj.get("p"), obj.get("s", 0), ts, None)
    if tag == "q":
        bid, ask = _number(obj.get("bp")), _number(obj.get("ap"))
        if bid is None or ask is None or not bid > 0 or not ask > 0:
            return ("bad", "bad_quote", obj)
        if ask < bid:
            return ("bad", "crossed_quote", obj)
        return ("print", obj.get("S"), (bid + ask) / 2.0, 0.0, parse_ts(obj.get("t")), None)
    if tag == "b":
        ts = parse_ts(obj.get("t"))
        return (
            "print",
            obj.get("S"),
            obj.get("c"),
            obj.get("v", 0),
            None if ts is None else ts + BAR_SPAN_S,
            obj.get("o"),
        )
    if tag in ("success", "subscription", "error"):
        return ("control", tag, obj)
    return ("bad", "unknown_message", obj)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def plain_item(obj: Any) -> Item:
    """One object of the plain JSON protocol."""
    if not isinstance(obj, dict):
        return ("bad", "bad_item", obj)
    if "error" in obj and "symbol" not in obj:
        return ("control", "error", obj)
    return (
        "print",
        obj.get("symbol"),
        obj.get("price"),
        obj.get("volume", 0),
        parse_ts(obj.get("ts")),
        obj.get("open"),
    )


DECODERS = {"alpaca": alpaca_item, "json": plain_item}


def alpaca_auth(key: str, secret: str) -> str:
    return json.dumps({"action": "auth", "key": key, "secret": secret})


def alpaca_subscribe(trades: list[str], quotes: list[str], bars: list[str]) -> str:
    return json.dumps({"action": "subscribe", "trades": trades, "quotes": quotes, "bars": bars})
