"""Issue 11, defect 5 (second half): nothing enters and no order leaves once "stopping"
is logged. The gateway is the last child to start and so the first to stop, and the
execution core refuses every order once the run is stopping."""

from __future__ import annotations

from aegis_actors.clock import WallClock
from aegis_actors.messages import Outcome
from aegis_actors.runtime import GATEWAY, Runtime
from aegis_actors.settings import Settings
from aegis_actors.tree import build, make_broker
from supervisors import Directory
from tests.execution_harness import Harness


def test_the_gateway_starts_last_so_it_stops_first() -> None:
    for redis, port in (("", 0), ("redis://127.0.0.1:6379/15", 8765)):
        s = Settings(store={"redis_url": redis}, dashboard={"port": port})
        rt = Runtime(settings=s, clock=WallClock(), directory=Directory())
        children, _policy = build(rt, make_broker(s, rt))
        assert children[-1].name == GATEWAY


def test_no_order_leaves_once_the_run_is_stopping() -> None:
    h = Harness()
    h.tick("AAPL", 100.0)
    h.ports.is_stopping = True
    d = h.decide("AAPL")
    assert h.broker.submitted == []
    done = h.outcome(d)
    assert done is not None and done.outcome is Outcome.REFUSED
    assert done.detail.startswith("refused:stopping")
