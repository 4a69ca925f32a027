"""Execution inside the whole tree on the virtual clock: orders flow, modes reach it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from aegis_actors.brokers.alpaca_sim import AlpacaSim
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
    assert reply.ok
    drive(vclock, 10.0, step=0.5)
    settle()
    st = d.ask(EXECUTION, GetStatus(), 5.0)
    assert st["mode"] == "safe"
    assert st["positions"] == {}
    assert st["open_orders"] == []


@pytest.mark.integration
def test_tree_on_the_rest_broker_reconciles_then_safe_flattens(
    aegis_factory: Any, vclock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = AlpacaSim(key_id="kid", secret_key="sek").start()
    try:
        sim.set_price("AAPL", 100.0)
        sim.dispatch(
            "POST",
            "/v2/orders",
            {},
            b'{"symbol": "AAPL", "qty": "10", "side": "buy", '
            b'"type": "market", "client_order_id": "before-start"}',
        )
        sim.dispatch(
            "POST",
            "/v2/orders",
            {},
            b'{"symbol": "AAPL", "qty": "5", "side": "buy", '
            b'"type": "limit", "limit_price": "90", "client_order_id": "resting"}',
        )
        monkeypatch.setenv("AEGIS_BROKER__KEY_ID", "kid")
        monkeypatch.setenv("AEGIS_BROKER__SECRET_KEY", "sek")
        app = aegis_factory(
            broker={"kind": "alpaca", "url": sim.url, "poll_every_s": 0.0},
            feed={"symbols": ["AAPL"], "volatility": 0.0},
        )
        d = app.rt.directory
        st = d.ask(EXECUTION, GetStatus(), 5.0)
        assert st["broker"] == "alpaca" and st["positions"]["AAPL"]["qty"] == 10.0
        reply = d.ask(WATCHDOG, RequestMode(target=TradingMode.SAFE, reason="t", operator=True), 5)
        assert reply.ok
        drive(vclock, 2.0, step=0.5)
        assert sim.open_orders() == [] and sim.positions == {}
        assert d.ask(EXECUTION, GetStatus(), 5.0)["positions"] == {}
    finally:
        sim.stop()


def test_rest_broker_needs_its_keys_from_the_environment(aegis_env: Any) -> None:
    from aegis_actors.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="AEGIS_BROKER__KEY_ID"):
        load_settings(None, broker={"kind": "alpaca", "url": "http://127.0.0.1:9"})
