"""Execution inside the whole tree on the virtual clock: orders flow, modes reach it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from aegis_actors.messages import GetStatus, RequestMode, TradingMode
from aegis_actors.runtime import EXECUTION, WATCHDOG
from tests.conftest import drive, settle

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _stdlib_logging_restored() -> Iterator[None]:
    """The app routes stdlib logging into loguru; put it back for the tests that follow."""
    saved = {}
    for name in ("supervisors", "pykka"):
        lg = logging.getLogger(name)
        saved[name] = (lg.handlers[:], lg.level, lg.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.propagate = handlers, propagate
        lg.setLevel(level)


def test_tree_trades_then_safe_closes_everything(aegis_factory: Any, vclock: Any) -> None:
    app = aegis_factory(feed={"symbols": ["AAPL", "MSFT", "SPY"], "volatility": 0.004})
    d = app.rt.directory
    drive(vclock, 120.0, step=0.5)
    st = d.ask(EXECUTION, GetStatus(), 5.0)
    assert st["orders"] > 0, st
    assert st["execution"]["success_rate_pct"] == 100.0
    reply = d.ask(WATCHDOG, RequestMode(target=TradingMode.SAFE, reason="test", operator=True), 5)
    assert reply["ok"]
    drive(vclock, 10.0, step=0.5)
    settle()
    st = d.ask(EXECUTION, GetStatus(), 5.0)
    assert st["mode"] == "safe"
    assert st["positions"] == {}
    assert st["open_orders"] == []
