"""The decisions ledger holds, byte for byte, what it held when the commander dumped the
roles' answers into each record itself (`json_of`): a record now carries the answers, and
the store writes each as the JSON text of its JSON dump (`json_text`), in one pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json
from roles_rig import contexts, run
from test_messages_json import _messages

import aegis_actors.messages as m
from aegis_actors.messages import DecisionRecord, json_of, json_text
from aegis_actors.store.actor import decision_row
from aegis_actors.store.base import Database, RowAdapter, _table
from aegis_actors.store.postgres import PostgresDatabase
from aegis_actors.store.sqlite import SQLiteDatabase

ANSWERS = ("analysis", "verdict", "decision")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic on the near misses
@settings(max_examples=600, deadline=None)
@given(st.sampled_from([m.Analysis, m.Verdict, m.Decision]).flatmap(_messages))
def test_json_text_is_the_text_of_the_json_dump(msg: m.Msg) -> None:
    """Near misses too: a float that is not finite (the dump's text says Infinity, the
    model's serializer null), an int in a float field, an enum's value for the enum."""
    want = to_json(json_of(msg)).decode()
    assert json_text(msg) == want
    cols = ["decision_id", "analysis"]
    adapted = RowAdapter(_table("decisions"), cols)({"decision_id": "d", "analysis": msg})
    assert adapted == ("d", want)


def test_json_text_takes_one_serializer_pass_for_our_own_values() -> None:
    d = m.Decision.trusted(
        event_id="e",
        decision_id="d",
        symbol="X",
        action=m.Action.HOLD,
        size_fraction=0.0,
        stop_loss=None,
        confidence=0.5,
        reason='no "null" here',
        posture=m.Posture.GUERRILLA,
        reference_price=101.5,
    )
    assert json_text(d) == to_json(json_of(d)).decode()
    assert m.text_writer(m.Decision).__name__ == "text"  # the serializer's pass, not the dump's


def _old(rec: DecisionRecord) -> DecisionRecord:
    """The record as the commander made it before: the answers as their JSON dumps."""
    return rec.replaced(
        **{k: json_of(getattr(rec, k)) for k in ANSWERS if getattr(rec, k) is not None}
    )


def _write(db: Database, recs: list[DecisionRecord]) -> list[dict[str, Any]]:
    """As the store writes them: half in one batch (one bulk insert in a transaction),
    half one at a time (`insert_once`); the rows read back without their ids."""
    db.delete("decisions", {"outcome": tuple({r.outcome for r in recs})})
    half = len(recs) // 2
    with db.transaction(durable=False):
        db.insert_many("decisions", [decision_row(r) for r in recs[:half]])
    for r in recs[half:]:
        assert db.insert_once("decisions", decision_row(r), "decision_id", ("event_id",))
    rows = db.select("decisions", order_by="id")
    for row in rows:
        del row["id"]
    return rows


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db: Database = SQLiteDatabase(str(tmp_path / "aegis.db"))
    else:
        db = PostgresDatabase(request.getfixturevalue("pg_dsn"))
    db.migrate()
    yield db
    db.close()


def test_the_roles_records_make_the_rows_their_dumps_made(ledger: Database) -> None:
    """Every outcome of the roles' golden sequence (tests/test_roles_records.py), written
    as the store writes records, gives the rows the records with the dumps gave; so does
    a record read back from the spool (its JSON dump, validated)."""
    recs = [msg for name, msg in run(contexts(60)).out if name == "store"]
    assert {r.outcome for r in recs} == {"decided", "hold", "vetoed", "timeout", "failed"}
    assert all(isinstance(r.analysis, m.Analysis | None) for r in recs)
    old = _write(ledger, [_old(r) for r in recs])
    assert len(old) == len(recs) and sum(all(row[k] for k in ANSWERS) for row in old) > 20
    assert _write(ledger, recs) == old
    spooled = [
        DecisionRecord.model_validate(json.loads(json.dumps(r.model_dump(mode="json"))))
        for r in recs
    ]
    assert spooled == recs
    assert _write(ledger, spooled) == old
