"""What the three rules roles say for a fixed sequence of events, held to a golden file.

Every message that leaves the roles (each DecisionRecord field value, the decisions for
execution, the EventDone for the gateway, the stage failures) and every log line they
write (per-event DEBUG traces included) must stay what it was when the file was written:
speed work on the roles may change how these are built, never what they say. `repr`
keeps the types too (an enum member, a float, key order). After a deliberate change,
regenerate with `REGEN_ROLES_GOLDEN=1` and say why in the commit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from roles_rig import contexts, run

from aegis_actors import logs
from aegis_actors.messages import Msg

GOLDEN = Path(__file__).parent / "data" / "roles_records.txt"
EVENTS = 60
_SESSION = re.compile(r"ss-[0-9a-f]{12}")  # a session id is random


def transcript(trace: bool) -> tuple[list[str], list[str]]:
    """(the log lines, the messages that left the roles)"""
    lines: list[str] = []

    def sink(message: Any) -> None:
        r = message.record
        if r["extra"].get("actor") in ("analyst", "verifier", "commander"):
            who = f"{r['extra']['actor']} {r['extra'].get('event_id', '-')}"
            text = _SESSION.sub("ss-*", r["message"])
            lines.append(f"log {r['level'].name} {who} {text}")

    sink_id = logger.add(sink, level="DEBUG" if trace else "INFO")
    saved = logs._trace
    logs._trace = trace
    try:
        rig = run(contexts(EVENTS))
    finally:
        logs._trace = saved
        logger.remove(sink_id)
    seen: set[int] = set()
    sent: list[str] = []
    for _name, msg in rig.out:
        if id(msg) in seen:  # a fan-out: one line for all receivers
            continue
        seen.add(id(msg))
        to = ",".join(n for n, m in rig.out if m is msg)
        sent.append(f"{to} {type(msg).__name__} {fields(msg)!r}")
    return lines, sent


def fields(msg: Msg) -> dict[str, Any]:
    """The message's fields; a message in one (a decision record's answers) as its JSON
    dump, which is what the ledger writes of it (the file was written when the record
    carried the dumps themselves)."""
    return {
        k: v.model_dump(mode="json") if isinstance(v, Msg) else v for k, v in msg.__dict__.items()
    }


def test_roles_say_what_the_golden_file_holds() -> None:
    logged, sent = transcript(False)
    traced, sent_tracing = transcript(True)
    assert sent_tracing == sent  # tracing changes the log, never a message
    got = ["# trace off", *logged, *sent, "# trace on", *traced]
    if os.environ.get("REGEN_ROLES_GOLDEN") == "1":
        GOLDEN.write_text("\n".join(got) + "\n")
    want = GOLDEN.read_text().splitlines()
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            pytest.fail(f"line {i + 1} differs:\n got: {a}\nwant: {b}")
    assert len(got) == len(want)


def test_the_sequence_covers_every_outcome() -> None:
    rig = run(contexts(EVENTS))
    outcomes = {m.outcome for n, m in rig.out if n == "store"}
    assert outcomes == {"decided", "hold", "vetoed", "timeout", "failed"}
    actions = {str(m.action) for n, m in rig.out if n == "execution"}
    assert {"buy", "sell", "close"} <= actions
