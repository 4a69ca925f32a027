"""The three roles on LLM APIs (fake servers on 127.0.0.1), the whole tree on a virtual clock."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from llm_fake import FakeLlm, Step
from roles_harness import Rig, llm_roles, make_rig

from aegis_actors.app import Aegis
from supervisors.clock import VirtualClock

BAD_ANALYSIS = {"direction": "sideways", "confidence": 7}  # schema-violating


@pytest.fixture
def servers(vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeLlm]]:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "ds-key-from-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "an-key-from-env")
    made = [FakeLlm(clock=vclock), FakeLlm(clock=vclock)]
    yield made
    for s in made:
        s.close()


@pytest.fixture
def rig(
    aegis_factory: Callable[..., Aegis],
    aegis_env: Path,
    vclock: VirtualClock,
    servers: list[FakeLlm],
) -> Callable[..., Rig]:
    def make(backup: bool = False, roles: dict[str, Any] | None = None, **sections: Any) -> Rig:
        primary, second = servers
        cfg = llm_roles(primary.url, second.url if backup else "", **(roles or {}))
        return make_rig(aegis_factory, aegis_env, vclock, servers, cfg, **sections)

    return make


def outcomes(r: Rig) -> dict[str, int]:
    return dict(r.watchdog()["outcomes"])


def test_full_cycle_on_both_wire_formats_records_provenance(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    r = rig()
    r.event("AAPL")
    r.drive(0.2)
    primary = servers[0]
    analyst, verifier, commander = (primary.calls(x) for x in ("analyst", "verifier", "commander"))
    assert len(analyst) == len(verifier) == len(commander) == 1
    assert analyst[0].path == "/chat/completions"
    assert analyst[0].headers["authorization"] == "Bearer ds-key-from-env"
    assert verifier[0].body["model"] == "deepseek-reasoner"
    assert commander[0].path == "/v1/messages"
    assert commander[0].headers["x-api-key"] == "an-key-from-env"
    assert "AAPL" in analyst[0].body["messages"][1]["content"]  # the injected context
    assert outcomes(r).get("ordered") == 1
    (row,) = r.decisions()
    assert row["outcome"] == "decided" and not row["vetoed"]
    assert json.loads(row["prompt_versions"]) == {
        "analyst": "analyst.v1",
        "verifier": "verifier.v1",
        "commander": "commander.v1",
    }
    assert json.loads(row["models"])["commander"] == "claude-opus-4-1"
    assert json.loads(row["tokens"])["analyst"] == {"input": 120, "output": 40}
    assert row["cost_usd"] > 0
    assert row["analysis_confidence"] == 0.8 and row["verdict_confidence"] == 0.9
    assert json.loads(row["decision"])["action"] == "buy"
    assert {"analysis", "verification"} <= set(json.loads(row["latency_ms"]))
    assert len(r.orders()) == 1


def test_veto_ends_the_event_at_once_with_its_reasons(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    r = rig()
    servers[0].script(
        "verifier",
        Step(answer={"verdict": "veto", "reasons": ["spread too wide"], "confidence": 0.95}),
    )
    servers[0].script("analyst", Step(latency_s=1.0))
    r.event("AAPL")
    r.drive(0.1)
    assert outcomes(r).get("vetoed") == 1  # before the analyst has even answered
    r.drive(1.5)
    assert servers[0].calls("commander") == []
    (row,) = r.decisions()
    assert row["vetoed"] and row["outcome"] == "vetoed"
    assert json.loads(row["verdict"])["reasons"] == ["spread too wide"]
    assert r.orders() == []


def test_slow_primary_fails_over_to_backup_within_5s(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    primary, backup = servers
    r = rig(backup=True)
    primary.script("analyst", Step(hang=True))
    t0 = r.clock.now()
    r.event("AAPL")
    r.drive(0.5)
    assert backup.calls("analyst") == []
    r.drive(2.5)
    (moved,) = backup.calls("analyst")
    assert moved.arrived - t0 <= 5.0
    assert outcomes(r).get("ordered") == 1
    status = r.role("analyst")
    assert status["endpoint"] == "backup" and status["failovers"] == 1
    primary.release()  # the primary's late answer is ignored
    wait_until(lambda: r.role("analyst")["late"] == 1, what="late answer")
    assert len(r.decisions()) == 1


def test_failing_primary_switches_to_backup_at_once(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    primary, backup = servers
    r = rig(backup=True)
    primary.script("commander", Step(status=503))
    r.event("AAPL")
    r.drive(0.1)
    assert len(backup.calls("commander")) == 1
    assert outcomes(r).get("ordered") == 1


def test_429_waits_retry_after_on_the_clock(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    primary = servers[0]
    r = rig()
    primary.script("analyst", Step(status=429, retry_after="1"))
    r.event("AAPL")
    r.drive(0.9)
    assert len(primary.calls("analyst")) == 1  # still waiting out Retry-After
    r.drive(0.2)
    assert len(primary.calls("analyst")) == 2
    assert outcomes(r).get("ordered") == 1


def test_retry_after_past_the_stage_budget_fails_the_stage(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    primary = servers[0]
    r = rig()
    primary.script("analyst", Step(status=429, retry_after="30"))
    r.event("AAPL")
    r.drive(0.1)
    assert outcomes(r).get("failed") == 1
    assert len(primary.calls("analyst")) == 1
    assert r.orders() == []


def test_invalid_answer_gets_one_repair(rig: Callable[..., Rig], servers: list[FakeLlm]) -> None:
    primary = servers[0]
    r = rig()
    primary.script("analyst", Step(answer=BAD_ANALYSIS))
    r.event("AAPL")
    r.drive(0.1)
    first, repair = primary.calls("analyst")
    asked = repair.body["messages"]
    assert asked[-2] == {"role": "assistant", "content": json.dumps(BAD_ANALYSIS)}
    assert "could not be used" in asked[-1]["content"] and "direction" in asked[-1]["content"]
    assert outcomes(r).get("ordered") == 1
    assert json.loads(r.decisions()[0]["analysis"])["meta"]["repaired"] is True


@pytest.mark.parametrize("bad", [Step(answer="not json at all"), Step(answer=BAD_ANALYSIS)])
def test_invalid_twice_fails_the_event_with_no_order(
    rig: Callable[..., Rig], servers: list[FakeLlm], bad: Step
) -> None:
    primary = servers[0]
    r = rig()
    primary.script("analyst", bad, bad)
    r.event("AAPL")
    r.drive(0.1)
    assert len(primary.calls("analyst")) == 2  # the answer and one repair, no more
    assert outcomes(r).get("failed") == 1
    assert r.orders() == []
    assert r.rt.metrics.errors.labels("llm_analyst_bad_answer")._value.get() == 2
    r.event("AAPL")  # the role keeps serving
    r.drive(0.1)
    assert outcomes(r).get("ordered") == 1


def test_stage_timeout_fails_the_event_and_ignores_the_late_answer(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    primary = servers[0]
    r = rig()
    primary.script("verifier", Step(hang=True))
    r.event("AAPL")
    r.drive(3.9)
    assert outcomes(r) == {}
    r.drive(0.2)
    assert outcomes(r).get("timeout") == 1
    (row,) = r.decisions()
    assert row["outcome"] == "timeout" and row["decision"] is None
    primary.release()
    wait_until(lambda: r.role("verifier")["late"] == 1, what="late verdict")
    r.drive(0.1)
    assert r.orders() == [] and len(r.decisions()) == 1


def test_three_failed_events_force_defensive(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    r = rig(roles={"analyst": {"max_retries": 0}})
    assert r.posture() != "defensive"
    for i in range(3):
        servers[0].script("analyst", Step(status=500))
        r.event("AAPL" if i % 2 == 0 else "MSFT")
        r.drive(0.1)
    assert outcomes(r).get("failed") == 3
    wait_until(lambda: r.posture() == "defensive", what="defensive posture")
    assert r.alerts("consecutive_failures")


def test_api_down_30s_limited_then_5min_safe(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    primary, backup = servers
    r = rig(backup=True, roles={"analyst": {"max_retries": 0}})
    down = [Step(status=503)] * 200
    primary.script("analyst", *down)
    backup.script("analyst", *down)
    r.event("AAPL")
    r.drive(29.0, step=1.0)
    assert r.mode() == "normal"
    r.drive(1.5, step=0.5)
    assert r.mode() == "limited"
    assert len(r.alerts("llm_api")) == 1
    r.event("MSFT")  # still failing
    r.drive(268.0, step=4.0)
    assert r.mode() == "limited"
    r.drive(2.0, step=0.5)
    assert r.mode() == "safe"
    assert len(r.alerts("llm_api")) == 2


def test_api_recovering_before_30s_stays_normal(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    r = rig(roles={"analyst": {"max_retries": 0}})
    servers[0].script("analyst", Step(status=503))
    r.event("AAPL")
    r.drive(10.0, step=1.0)
    r.event("AAPL")  # answers fine: the outage ends
    r.drive(40.0, step=2.0)
    assert r.mode() == "normal" and r.alerts("llm_api") == []


def test_daily_budget_spent_moves_to_limited(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    r = rig(roles={"commander": {"daily_budget_usd": 0.009}})  # 120 in + 40 out = $0.0048
    r.event("AAPL")
    r.drive(0.1)
    assert r.mode() == "normal"
    r.event("MSFT")
    r.drive(0.1)
    assert r.mode() == "limited"
    (alert,) = r.alerts("llm_budget")
    assert "commander" in alert["message"]
    usage = r.role("commander")["usage"]
    # Two market events, plus the system events the mode change itself fed in (SPEC 1.3).
    calls = len(servers[0].calls("commander"))
    assert calls >= 2
    assert usage["input_tokens"] == 120 * calls and usage["output_tokens"] == 40 * calls


def test_flood_on_one_symbol_keeps_one_in_flight(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    primary = servers[0]
    primary.default_latency["analyst"] = 1.0
    r = rig()
    for _ in range(20):
        r.event("AAPL")
    r.drive(0.5)
    assert len(primary.calls("analyst")) == 1
    assert r.rt.metrics.coalesced._value.get() == 18  # 1 in flight, 1 waiting (the latest)
    r.drive(3.0)
    assert len(primary.calls("analyst")) == 2
    assert sum(outcomes(r).values()) == 2


def cycle_ms(r: Rig) -> float:
    latency = r.watchdog()["latency"]["cycle"]
    assert latency["count"] == 1
    return float(latency["p50_ms"])


def test_parallel_cycle_is_shorter_by_the_verifiers_time(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    lat = {"analyst": 2.0, "verifier": 1.5, "commander": 1.0}
    servers[0].default_latency.update(lat)
    timeouts = {"analyst": {"timeout_s": 5.0}, "verifier": {"timeout_s": 4.0}}
    cycles = {}
    for parallel in (True, False):
        r = rig(roles=timeouts | {"parallel_verification": parallel})
        r.event("AAPL")
        r.drive(6.0)
        cycles[parallel] = cycle_ms(r)
        r.app.stop("next mode")
    assert cycles[True] == pytest.approx(3000, abs=70)  # analyst 2 s + commander 1 s
    assert cycles[False] == pytest.approx(4500, abs=70)  # + the verifier's 1.5 s
    assert cycles[False] - cycles[True] == pytest.approx(1500, abs=70)


def test_sequential_verifier_checks_the_analysts_proposal(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    r = rig(roles={"parallel_verification": False})
    servers[0].script(
        "verifier", Step(answer={"verdict": "veto", "reasons": ["weak logic"], "confidence": 0.7})
    )
    r.event("AAPL")
    r.drive(0.1)
    (asked,) = servers[0].calls("verifier")
    assert "higher highs on rising volume" in asked.body["messages"][1]["content"]
    assert outcomes(r).get("vetoed") == 1 and servers[0].calls("commander") == []


def test_commander_past_its_timeout_fails_the_decision_stage(
    rig: Callable[..., Rig], servers: list[FakeLlm]
) -> None:
    r = rig()
    servers[0].script("commander", Step(hang=True))
    r.event("AAPL")
    r.drive(1.9)
    assert outcomes(r) == {}
    r.drive(0.2)
    assert outcomes(r).get("timeout") == 1
    (row,) = r.decisions()
    assert row["outcome"] == "timeout" and row["analysis"] and row["verdict"]
    servers[0].release()
    assert r.orders() == []


def test_api_keys_never_reach_the_log(
    rig: Callable[..., Rig], servers: list[FakeLlm], aegis_env: Path
) -> None:
    r = rig(roles={"analyst": {"max_retries": 0}})
    servers[0].script("analyst", Step(status=401, body='{"error": "invalid key"}'))
    r.event("AAPL")
    r.drive(0.1)
    assert outcomes(r).get("failed") == 1
    r.app.stop("check logs")
    text = "".join(p.read_text() for p in (aegis_env / "logs").glob("*"))
    assert "HTTP 401" in text
    assert "ds-key-from-env" not in text and "an-key-from-env" not in text
