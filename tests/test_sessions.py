"""Commander sessions in a whole run on the virtual clock (SPEC 1.1): saved every 10 s,
closed after 3 minutes, resumed by a restarted process from what was saved."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import drive, settle

from aegis_actors.messages import GetStatus
from aegis_actors.runtime import COMMANDER
from aegis_actors.store import open_database
from supervisors.clock import VirtualClock

RUN = {"feed": {"symbols": ["AAPL", "MSFT"]}}


def sessions(aegis_env: Path) -> list[dict[str, Any]]:
    db = open_database(sqlite_path=str(aegis_env / "var" / "aegis.db"))
    try:
        return db.select("sessions", order_by="opened_at")
    finally:
        db.close()


def commander(app: Any) -> dict[str, Any]:
    return app.rt.directory.ask(COMMANDER, GetStatus(), 5.0)


def test_saved_every_10s_and_closed_after_3_minutes(
    aegis_factory: Callable[..., Any], aegis_env: Path, vclock: VirtualClock
) -> None:
    app = aegis_factory(**RUN)
    drive(vclock, 1.0)
    first = commander(app)["session"]
    assert first
    drive(vclock, 30.0, step=1.0)
    rows = sessions(aegis_env)
    assert [r["session_id"] for r in rows] == [first]
    assert rows[0]["saves"] >= 3 and rows[0]["closed_at"] is None
    assert json.loads(rows[0]["state"])["decisions"] > 0
    drive(vclock, 160.0, step=1.0)
    rows = sessions(aegis_env)
    assert rows[0]["session_id"] == first
    assert rows[0]["closed_at"] is not None
    assert 180.0 <= rows[0]["closed_at"] - rows[0]["opened_at"] <= 191.0
    assert commander(app)["session"] not in ("", first)  # a fresh session took over


def test_restarted_process_resumes_the_saved_session(
    aegis_factory: Callable[..., Any], aegis_env: Path, vclock: VirtualClock
) -> None:
    app = aegis_factory(**RUN)
    drive(vclock, 25.0, step=1.0)
    sid = commander(app)["session"]
    app.stop("restart")
    saved = sessions(aegis_env)[0]
    decided = json.loads(saved["state"])["decisions"]
    assert saved["session_id"] == sid and saved["closed_at"] is None and decided > 0

    again = aegis_factory(**RUN)
    assert commander(again)["session"] == sid
    drive(vclock, 25.0, step=1.0)  # the new process needs some price history first
    settle()
    row = sessions(aegis_env)[0]
    assert row["session_id"] == sid and row["saves"] > saved["saves"]
    assert json.loads(row["state"])["decisions"] > decided  # counting on from the save


def test_session_that_ran_out_while_stopped_is_closed_at_its_end(
    aegis_factory: Callable[..., Any], aegis_env: Path, vclock: VirtualClock
) -> None:
    app = aegis_factory(**RUN)
    drive(vclock, 15.0, step=1.0)
    sid = commander(app)["session"]
    app.stop("restart")
    vclock.advance(300.0)
    again = aegis_factory(**RUN)
    settle()
    rows = {r["session_id"]: r for r in sessions(aegis_env)}
    assert rows[sid]["closed_at"] == rows[sid]["opened_at"] + 180.0
    drive(vclock, 2.0)
    assert commander(again)["session"] not in ("", sid)
