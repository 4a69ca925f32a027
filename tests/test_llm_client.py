"""The production LLM clients against a real HTTP server speaking both wire formats."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from llm_fake import FakeLlm, Step
from pydantic import SecretStr

from aegis_actors.llm import CostMeter, Endpoint, EndpointPool, LlmError, Usage, make_client
from aegis_actors.llm.health import ApiHealth
from aegis_actors.llm.keys import api_key

SYSTEM = "You are the analyst of a test."
ASK = [{"role": "user", "content": "answer in json"}]


@pytest.fixture
def srv() -> Iterator[FakeLlm]:
    s = FakeLlm()
    yield s
    s.close()


def test_openai_wire_format_bearer_key_json_mode_and_usage(srv: FakeLlm) -> None:
    client = make_client(Endpoint(srv.url, "openai", "deepseek-chat", key="sk-test-1"))
    srv.script("analyst", Step(answer={"direction": "up"}, tokens=(321, 54)))
    reply = client.complete(SYSTEM, ASK, timeout_s=5)
    assert reply.text == '{"direction": "up"}'
    assert reply.usage == Usage(321, 54)
    assert reply.model == "deepseek-chat"
    seen = srv.calls()[0]
    assert seen.path == "/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-test-1"
    assert seen.body["response_format"] == {"type": "json_object"}
    assert seen.body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert seen.body["messages"][1:] == ASK


def test_anthropic_wire_format_headers_system_prompt_and_usage(srv: FakeLlm) -> None:
    client = make_client(Endpoint(srv.url, "anthropic", "claude-opus-4-1", key="ak-test-2"))
    srv.script("analyst", Step(answer="plain text", tokens=(900, 77)))
    reply = client.complete(SYSTEM, ASK, timeout_s=5)
    assert (reply.text, reply.usage) == ("plain text", Usage(900, 77))
    seen = srv.calls()[0]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "ak-test-2"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body["system"] == SYSTEM and seen.body["messages"] == ASK
    assert seen.body["max_tokens"] > 0


def test_one_session_per_endpoint_reuses_the_connection(srv: FakeLlm) -> None:
    client = make_client(Endpoint(srv.url, "openai", "m"))
    for _ in range(3):
        client.complete(SYSTEM, ASK, timeout_s=5)
    pool = client.session.get_adapter(srv.url).poolmanager
    assert len(pool.pools) == 1  # one connection pool, kept alive across calls
    assert len(srv.calls()) == 3


@pytest.mark.parametrize(
    ("step", "kind", "retryable", "retry_after"),
    [
        (Step(status=429, retry_after="2"), "rate_limited", True, 2.0),
        (Step(status=503), "server", True, None),
        (Step(status=529, retry_after="1.5"), "server", True, 1.5),
        (Step(body="<html>bad gateway</html>"), "bad_response", True, None),
        (Step(body='{"choices": []}'), "bad_response", True, None),
        (Step(status=401, body='{"error": "bad key"}'), "client", False, None),
    ],
)
def test_errors_are_classified(
    srv: FakeLlm, step: Step, kind: str, retryable: bool, retry_after: float | None
) -> None:
    client = make_client(Endpoint(srv.url, "openai", "m", key="sk-secret-xyz"))
    srv.script("analyst", step)
    with pytest.raises(LlmError) as info:
        client.complete(SYSTEM, ASK, timeout_s=5)
    err = info.value
    assert (err.kind, err.retryable, err.retry_after_s) == (kind, retryable, retry_after)
    assert "sk-secret-xyz" not in str(err)


def test_unreachable_endpoint_is_a_network_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(Endpoint(f"http://127.0.0.1:{port}", "anthropic", "m"))
    with pytest.raises(LlmError) as info:
        client.complete(SYSTEM, ASK, timeout_s=2)
    assert info.value.kind == "network" and info.value.retryable


def test_key_falls_back_to_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "ds-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "an-env")
    assert api_key(SecretStr(""), "openai") == "ds-env"
    assert api_key(SecretStr(""), "anthropic") == "an-env"
    assert api_key(SecretStr("own"), "anthropic") == "own"
    assert "an-env" not in repr(Endpoint("http://x", "anthropic", "m", key="an-env"))


def test_token_budget_is_reported_too() -> None:
    meter = CostMeter(price_in_per_1k=0.0, price_out_per_1k=0.0, budget_tokens=1000)
    assert meter.add(Usage(600, 300), 0.0) is False
    assert meter.add(Usage(100, 0), 1.0) is True
    assert meter.spent()


def test_cost_meter_counts_per_day_and_reports_budget_once() -> None:
    meter = CostMeter(price_in_per_1k=1.0, price_out_per_1k=2.0, budget_usd=5.0)
    day1 = 1_767_225_600.0
    assert meter.add(Usage(1000, 1000), day1) is False  # $3
    assert meter.add(Usage(1000, 500), day1 + 60) is True  # $5: spent
    assert meter.add(Usage(1000, 0), day1 + 120) is False  # already reported today
    assert meter.summary()["cost_usd"] == 6.0
    assert meter.add(Usage(10, 0), day1 + 86_400) is False  # a new day starts from zero
    assert meter.summary()["calls"] == 1


def test_api_health_tiers_once_per_outage() -> None:
    h = ApiHealth(limited_after_s=30, safe_after_s=300)
    assert h.failure(100.0) is True
    assert h.failure(110.0) is False
    outage = h.outage
    assert h.check(outage, 129.0) is None
    assert h.check(outage, 130.0) == "limited"
    assert h.check(outage, 131.0) is None
    assert h.check(outage, 400.0) == "safe"
    assert h.success() is True
    assert h.check(outage, 500.0) is None  # the outage ended


def test_pool_switches_to_backup_and_retries_primary_later(srv: FakeLlm) -> None:
    primary = make_client(Endpoint(srv.url, "openai", "m", name="primary"))
    backup = make_client(Endpoint(srv.url, "openai", "m", name="backup"))
    pool = EndpointPool(primary, backup, retry_primary_s=60)
    assert pool.pick(0) is primary
    assert pool.failed(primary, 10.0) is True
    assert pool.pick(20.0) is backup
    assert pool.failed(primary, 21.0) is False  # already on the backup
    assert pool.pick(70.0) is primary
