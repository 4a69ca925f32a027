"""The admin protocol without a process: canonical JSON, signature vectors, each refusal,
replay memory, the security log's rate limit, and what `reload` may change live."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import wait_until
from loguru import logger

from aegis_actors.admin import protocol as p
from aegis_actors.admin.channel import Subscriber
from aegis_actors.admin.client import build_args, event_line, redacted_url, render
from aegis_actors.admin.gate import SecurityLog
from aegis_actors.admin.protocol import Refusal, Request, SeenIds, canonical, check, sign, verify
from aegis_actors.admin.reload import apply, changed_keys, is_live
from aegis_actors.execution.risk import PreTradeRisk
from aegis_actors.settings import Settings
from supervisors import VirtualClock

SECRET = "s3cret"
NOW = 1_700_000_000.0


# -- canonical JSON and signatures (vectors computed with `openssl dgst -sha256 -hmac`) ----


def test_canonical_json_sorts_keys_without_spaces() -> None:
    body = canonical("mode", {"set": "safe"}, "00000000-0000-4000-8000-000000000000", 1700000000)
    assert body == (
        b'{"args":{"set":"safe"},"cmd":"mode",'
        b'"id":"00000000-0000-4000-8000-000000000000","ts":1700000000}'
    )
    nested = canonical("x", {"b": 1, "a": {"d": [1, 2], "c": None}}, "i", 1.5)
    assert nested == b'{"args":{"a":{"c":null,"d":[1,2]},"b":1},"cmd":"x","id":"i","ts":1.5}'
    assert canonical("restart", {"actor": "café"}, "x", 1) == (
        b'{"args":{"actor":"caf\\u00e9"},"cmd":"restart","id":"x","ts":1}'
    )


@pytest.mark.parametrize(
    ("secret", "cmd", "args", "id_", "ts", "expected"),
    [
        (
            "s3cret",
            "mode",
            {"set": "safe"},
            "00000000-0000-4000-8000-000000000000",
            1700000000,
            "374ab2242cfd30c526013f3c0fdcb51eac598be109aa3b36bc522993a98d8bfd",
        ),
        (
            "k",
            "status",
            {},
            "a",
            1700000000.25,
            "75b2a7afec448ce3d48166eb3429fb081941326578a1cd68b569b2daa5f91eb3",
        ),
        (
            "k",
            "restart",
            {"actor": "café"},
            "x",
            1,
            "5a6b62ffb28e741a3798ec287e50c616ad8061b8fed1d828c6a6a706ee614b4e",
        ),
    ],
)
def test_signature_vectors(
    secret: str, cmd: str, args: dict[str, Any], id_: str, ts: float, expected: str
) -> None:
    assert sign(secret, cmd, args, id_, ts) == expected
    assert verify(secret, cmd, args, id_, ts, expected)
    assert not verify(secret + "x", cmd, args, id_, ts, expected)
    assert not verify(secret, cmd, {**args, "extra": 1}, id_, ts, expected)


def test_a_request_survives_the_wire_and_verifies() -> None:
    req = p.request(SECRET, "posture", {"set": "auto"}, NOW)
    wire = json.loads(json.dumps(req))
    result = check(json.dumps(wire), secret=SECRET, now=NOW + 1, seen=SeenIds())
    assert result == Request(req["id"], "posture", {"set": "auto"}, NOW)


# -- every refusal, each with its own reason and line -------------------------------------


def signed(cmd: str, args: dict[str, Any] | None = None, ts: float = NOW, **fields: Any) -> str:
    req = p.request(SECRET, cmd, args, ts)
    req.update(fields)
    return json.dumps(req)


def refused(raw: str | bytes, seen: SeenIds | None = None, secret: str = SECRET) -> Refusal:
    result = check(raw, secret=secret, now=NOW, seen=seen or SeenIds())
    assert isinstance(result, Refusal), result
    return result


@pytest.mark.parametrize(
    ("raw", "reason", "says"),
    [
        ("x" * (p.MAX_BYTES + 1), "too_large", "larger than"),
        (b"\xff\xfe", "not_json", "not JSON"),
        ("{" * 10_000, "not_json", "not JSON"),
        ("[1,2]", "not_object", "not a JSON object"),
        ('{"id": 5}', "bad_id", "'id' must be"),
        ('{"id": "has space"}', "bad_id", "'id' must be"),
        ('{"id": "a", "cmd": ["status"], "args": {}, "ts": 1, "sig": ""}', "bad_shape", "'cmd'"),
        ('{"id": "a", "cmd": "status", "args": [], "ts": 1, "sig": ""}', "bad_shape", "'args'"),
        ('{"id": "a", "cmd": "status", "args": {}, "ts": true, "sig": ""}', "bad_shape", "'ts'"),
        ('{"id": "a", "cmd": "status", "args": {}, "ts": 1}', "bad_shape", "'sig' is missing"),
        ('{"id":"a","cmd":"status","args":{},"ts":1,"sig":"","x":1}', "bad_shape", "unknown"),
    ],
)
def test_malformed_requests_are_refused_before_the_signature(
    raw: str | bytes, reason: str, says: str
) -> None:
    r = refused(raw)
    assert r.reason == reason and says in r.error
    assert (r.id is None) == (reason in ("too_large", "not_json", "not_object", "bad_id"))


def test_signed_requests_refused_each_for_its_own_reason() -> None:
    seen = SeenIds()
    forged = json.loads(signed("status"))
    forged["sig"] = sign("other", "status", {}, forged["id"], forged["ts"])
    cases = {
        "bad_signature": json.dumps(forged),
        "stale_ts": signed("status", ts=NOW - 31),
        "unknown_command": signed("liquidate"),
        "bad_args": signed("mode", {"set": "shutdown"}),
    }
    errors = {}
    for reason, raw in cases.items():
        r = refused(raw, seen)
        assert r.reason == reason, (reason, r)
        errors[reason] = r.error
    assert len(set(errors.values())) == len(errors)
    assert refused(signed("status", ts=NOW + 31), seen).error.startswith("ts is +31.0 s off")
    assert refused(signed("status"), secret="").reason == "no_secret"
    once = signed("status")
    assert isinstance(check(once, secret=SECRET, now=NOW, seen=seen), Request)
    full = check(signed("status", {"full": True}), secret=SECRET, now=NOW, seen=seen)
    assert isinstance(full, Request) and full.args == {"full": True}
    assert refused(once, seen).reason == "replay"


@pytest.mark.parametrize(
    ("cmd", "args", "says"),
    [
        ("status", {"verbose": True}, "unexpected argument(s) ['verbose']"),
        ("status", {"full": "yes"}, "'full' must be true or false"),
        ("tree", {"full": True}, "takes no arguments"),
        ("posture", {}, "'set' must be one of offensive|guerrilla|defensive|auto"),
        ("posture", {"set": "reckless"}, "got 'reckless'"),
        ("mode", {"set": "normal", "why": "x"}, "unexpected argument(s) ['why']"),
        ("restart", {"actor": 3}, "'actor' must be a name"),
        ("ack", {"alert": ""}, "'alert' must be a name"),
        ("shutdown", {"now": True}, "takes no arguments"),
    ],
)
def test_bad_arguments_name_the_problem(cmd: str, args: dict[str, Any], says: str) -> None:
    r = refused(signed(cmd, args))
    assert (
        r.reason == "bad_args"
        and says in r.error
        and r.error.startswith(f"bad arguments for {cmd}")
    )


def test_seen_ids_forget_what_the_ts_window_already_refuses_and_fail_closed() -> None:
    seen = SeenIds(window_s=30, limit=3)
    for i in range(3):
        assert seen.add(f"a{i}", NOW, NOW) is None
    assert seen.add("a0", NOW, NOW + 1) == "replay"
    assert seen.add("b", NOW, NOW + 1) == "replay_cache_full"  # all three still in the window
    assert seen.add("b", NOW + 40, NOW + 40) is None  # the old ones expired and were pruned
    assert len(seen) == 1


# -- security log: rate-limited, summary line, no secret -----------------------------------


def test_security_log_is_rate_limited_with_a_summary() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}", level="WARNING")
    try:
        clock = VirtualClock(NOW)
        log = SecurityLog(clock, per_s=5)
        for _ in range(100):
            log.refused(Refusal("not_json", "request is not JSON"))
        assert len(lines) == 5
        clock.advance(1.0)
        log.tick()
        assert len(lines) == 6 and "95 more" in lines[-1] and "'not_json': 95" in lines[-1]
    finally:
        logger.remove(sink)


# -- reload: what may change live ----------------------------------------------------------


def test_reload_applies_live_keys_in_place_where_actors_hold_them() -> None:
    current = Settings()
    risk = PreTradeRisk(current.risk, 100_000.0, NOW)  # holds the section, as execution does
    fresh = Settings(risk={"max_orders_per_minute": 7}, posture={"vix_low": 12.0})
    applied, refused_keys = apply(current, fresh)
    assert refused_keys == [] and applied == ["posture.vix_low", "risk.max_orders_per_minute"]
    assert risk.cfg.max_orders_per_minute == 7 and current.posture.vix_low == 12.0


def test_reload_touching_a_start_only_key_is_refused_whole_by_name() -> None:
    current = Settings()
    fresh = Settings(
        risk={"max_orders_per_minute": 7},
        feed={"symbols": ["AAPL"]},
        posture={"mode": "defensive"},
        admin={"channel": "elsewhere"},
    )
    applied, refused_keys = apply(current, fresh)
    assert applied == []
    assert refused_keys == ["admin.channel", "feed.symbols", "posture.mode"]
    assert current.risk.max_orders_per_minute == 200
    assert changed_keys(current, current) == []
    assert is_live("posture.vix_low") and not is_live("store.redis_url")
    # copied into a helper at start (MismatchGuard, AccountWatch, OrderMix, cached posture
    # params), so reload refuses them rather than report a change nobody sees
    for key in (
        "risk.mismatch_halt_pct",
        "risk.minute_loss_limit_pct",
        "risk.order_mix_window",
        "watchdog.capital_loss_halt_pct",
        "posture.offensive.entry_size",
    ):
        assert not is_live(key), key
    assert is_live("roles.max_consecutive_failures")


# -- the command line's small parts ---------------------------------------------------------


def test_cli_parts_hide_passwords_and_print_readably() -> None:
    assert redacted_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted_url("redis://127.0.0.1:6379/15") == "redis://127.0.0.1:6379/15"

    class A:
        cmd, set_, actor, alert = "mode", None, None, None

    assert build_args(A()) is None  # type: ignore[arg-type]
    A.set_ = "safe"
    assert build_args(A()) == {"set": "safe"}  # type: ignore[arg-type]
    tree = {
        "name": "root",
        "kind": "supervisor",
        "state": "running",
        "restarts": 0,
        "children": [{"name": "analyst", "kind": "actor", "state": "running", "restarts": 2}],
    }
    assert (
        render("tree", tree).splitlines()[1].strip().startswith("analyst  actor running restarts=2")
    )
    assert "mode: safe" in render("mode", {"mode": "safe"})
    assert event_line({"type": "mode", "ts": NOW, "new": "safe"}).endswith("mode        new=safe")


def test_subscriber_keeps_retrying_while_redis_is_unreachable() -> None:
    errors: list[str] = []
    sub = Subscriber("redis://127.0.0.1:1/0", "nowhere", lambda _m: None, errors.append)
    sub.start()
    wait_until(lambda: len(errors) >= 2, what="two connection errors")
    assert not sub.subscribed.is_set()
    sub.stop()
    assert not sub._thread.is_alive()
    assert all("ConnectionError" in e for e in errors)


def test_brief_status_keeps_positions_sla_and_errors_and_drops_the_bulk() -> None:
    from aegis_actors.status import brief

    position = {"symbol": "AAPL", "qty": 10.0, "avg_price": 100.0, "stop_loss": 98.5}
    full = {
        "run_id": "r1",
        "ts": 1.0,
        "summary": {"mode": "normal", "posture": "guerrilla", "positions": 1},
        "pnl": {"positions": {"AAPL": {**position, "price": 101.0, "pnl": 10.0}}},
        "watchdog": {
            "mode": "normal",
            "latency": {"cycle": {"count": 3, "p99_ms": 9.0}},
            "sla": {"cycle": {"target_ms": 4000}},
            "confidence": {"analyst": {"mean": 0.5}},
        },
        "execution": {"equity": 1e5, "positions": {"AAPL": position}, "execution": {"sent": 1}},
        "feed": {"ticks": 5, "recent": [{"symbol": "AAPL"}]},
        "store": {"error": "Timeout: "},
        "settings": {"admin": {"channel": "aegis:admin"}},
        "tree": {"name": "root"},
    }
    st = brief(full)
    assert st["execution"] == {"equity": 1e5, "positions": {"AAPL": position}}
    assert st["pnl"] == full["pnl"] and st["summary"] == full["summary"]
    assert st["watchdog"] == {
        "mode": "normal",
        "latency": {"cycle": {"count": 3, "p99_ms": 9.0}},
        "sla": {"cycle": {"target_ms": 4000}},
    }
    assert st["feed"] == {"ticks": 5} and st["store"] == {"error": "Timeout: "}
    assert "settings" not in st and "tree" not in st and st["full"] is False
