"""The daily report's arithmetic on hand-made ledgers: positions carried in from an earlier
day close against their real cost, a position flipped through flat, per-posture figures,
drawdown, entry size against the posture's full-conviction size."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from aegis_actors.closeday.ledger import DayLedger, day_bounds
from aegis_actors.closeday.report import build, thin
from aegis_actors.settings import load_settings

DAY = date(2026, 3, 2)
START, END = day_bounds(DAY)


def fill(i: int, sym: str, side: str, qty: float, price: float, ts: float, fee: float = 1.0) -> Any:
    return {
        "id": i,
        "fill_id": f"f{i}",
        "client_order_id": f"o{i}",
        "symbol": sym,
        "side": side,
        "qty": qty,
        "price": price,
        "fee": fee,
        "ts": ts,
    }


def order(i: int, sym: str, side: str, qty: float, price: float, ts: float, posture: str) -> Any:
    return {
        "client_order_id": f"o{i}",
        "symbol": sym,
        "side": side,
        "qty": qty,
        "limit_price": price,
        "avg_fill_price": price,
        "status": "filled",
        "posture": posture,
        "intent": "entry" if side == "buy" else "exit",
        "created_at": ts,
    }


def ledger(fills: list[Any], orders: list[Any], positions: list[Any] | None = None) -> DayLedger:
    by_id = {o["client_order_id"]: o for o in orders}
    return DayLedger(
        day=DAY,
        start=START,
        end=END,
        fills=fills,
        orders=by_id,
        day_orders=[o for o in orders if START <= o["created_at"] < END],
        open_orders=[],
        positions=positions or [],
        decisions=[],
        alerts=[],
        mode_changes=[],
        posture_changes=[],
        kind="sqlite",
    )


def test_a_position_carried_in_closes_against_its_cost() -> None:
    s = load_settings(None)
    fills = [
        fill(1, "AAPL", "buy", 10, 100.0, START - 3600),  # yesterday
        fill(2, "AAPL", "sell", 10, 103.0, START + 3600),  # today: +30 realised
        fill(3, "MSFT", "buy", 5, 200.0, START + 7200),
        fill(4, "MSFT", "sell", 8, 198.0, START + 9000),  # -10 realised, now short 3 @ 198
    ]
    orders = [
        order(1, "AAPL", "buy", 10, 100.0, START - 3600, "offensive"),
        order(2, "AAPL", "sell", 10, 103.0, START + 3600, "offensive"),
        order(3, "MSFT", "buy", 5, 200.0, START + 7200, "guerrilla"),
        order(4, "MSFT", "sell", 8, 198.0, START + 9000, "guerrilla"),
    ]
    r = build(ledger(fills, orders), s, marks={"MSFT": 197.0})
    assert r["by_symbol"]["AAPL"]["realised"] == 30.0
    assert r["by_symbol"]["MSFT"]["realised"] == -10.0
    assert r["by_posture"]["offensive"]["realised"] == 30.0
    assert r["by_posture"]["offensive"]["trades"] == 1 and r["by_posture"]["offensive"]["wins"] == 1
    assert r["pnl"]["fees"] == 3.0  # yesterday's fee is yesterday's
    [short] = r["open_positions"]
    assert short["symbol"] == "MSFT" and short["qty"] == -3 and short["avg_price"] == 198.0
    assert short["unrealised"] == 3.0  # short 3 from 198, marked at 197
    # AAPL was marked at its cost at the open (no price seen before), so net = day's P&L
    assert r["pnl"]["net"] == pytest.approx(30.0 - 10.0 - 3.0 + 3.0)
    assert r["trades"] == 2 and r["win_rate"] == 0.5
    assert r["pnl"]["max_drawdown"] >= 10.0
    assert r["entry_size"]["guerrilla"]["entries"] == 1
    assert r["entry_size"]["guerrilla"]["average"] == pytest.approx(5 * 200.0 / s.broker.capital)
    assert r["entry_size"]["guerrilla"]["full_conviction"] == 0.02


def test_an_empty_day_reports_zero() -> None:
    r = build(ledger([], []), load_settings(None))
    assert r["pnl"]["net"] == 0.0 and r["trades"] == 0 and r["win_rate"] is None
    assert [t["status"] for t in r["accuracy"]["targets"]] == ["too_few"] * 3


def test_the_drawn_line_keeps_the_dip() -> None:
    pts = [(float(i), 100.0) for i in range(10_000)]
    pts[5_000] = (5_000.0, 50.0)
    out = thin(pts, 100)
    assert len(out) <= 110 and (5_000.0, 50.0) in out and out[-1] == pts[-1]


def test_a_position_only_in_the_positions_table_is_still_carried() -> None:
    held = {"symbol": "TSLA", "qty": 4.0, "avg_price": 250.0, "posture": "defensive"}
    r = build(ledger([], [], positions=[{**held, "stop_loss": None}]), load_settings(None))
    [p] = r["open_positions"]
    assert p["symbol"] == "TSLA" and p["qty"] == 4.0 and p["stop_loss"] is None


def test_llm_calls_tokens_and_cost_per_role() -> None:
    s = load_settings(
        None,
        roles={
            "analyst": {"backend": "llm", "price_in_per_1k": 0.5, "price_out_per_1k": 2.0},
            "commander": {"backend": "llm", "api": "anthropic", "model": "claude-opus-4"},
        },
    )
    led = ledger([], [])
    led.decisions = [
        {
            "decision_id": f"d{i}",
            "symbol": "AAPL",
            "created_at": START + 60 * i,
            "analysis": {"direction": "up"},
            "decision": {},
            "latency_ms": {"analysis": 900.0},
            "tokens": {"analyst": {"input": 1000, "output": 100}}
            | ({"commander": {"input": 2000, "output": 50}} if i % 2 else {}),
            "models": {"analyst": "deepseek-chat"},
            "cost_usd": 0.01,
        }
        for i in range(4)
    ]
    llm = build(led, s)["llm"]
    assert llm["analyst"]["calls"] == 4 and llm["analyst"]["tokens_in"] == 4000
    assert llm["analyst"]["cost_usd"] == pytest.approx(4 * (0.5 + 0.2))
    assert llm["analyst"]["models"] == ["deepseek-chat"]
    assert llm["commander"]["calls"] == 2 and llm["commander"]["tokens_out"] == 100
    assert llm["verifier"]["calls"] == 0
    assert llm["total_cost_usd"] == pytest.approx(0.04)
