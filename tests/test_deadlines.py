"""Deadlines swept per actor: what a sweep reports, and how much it walks."""

from __future__ import annotations

from aegis_actors.deadlines import Deadlines


def test_a_sweep_reports_the_pending_keys_that_came_due_in_order() -> None:
    d: Deadlines[str] = Deadlines(2.0)
    assert d.add(0.0, "a") == 2.0  # the first key arms the one timer
    assert d.add(0.1, "b") is None
    assert d.add(0.2, "c") is None
    late, delay = d.due(2.15, lambda k: k != "a")  # "a" ended in time
    assert late == ["b"]
    assert delay is not None and abs(delay - 0.05) < 1e-9  # "c" is due at 2.2
    late, delay = d.due(2.2, lambda k: True)
    assert (late, delay) == (["c"], None)  # nothing left: disarmed
    assert d.add(3.0, "d") == 2.0


def test_a_sweep_walks_only_the_deadlines_that_came_due() -> None:
    """Events end long before their deadlines: a sweep must not walk every ended event
    queued behind the first due one (a whole timeout's worth, the actor stalled)."""
    d: Deadlines[int] = Deadlines(2.0)
    for i in range(6000):  # 3,000 events/s for 2 s, all ended in time
        d.add(i / 3000, i)
    looked: list[int] = []

    def pending(k: int) -> bool:
        looked.append(k)
        return False

    late, delay = d.due(2.0 + 0.05, pending)
    assert late == []
    assert looked == list(range(151))  # due by 2.05 s: the first 50 ms of events
    assert delay is not None and delay >= 0.05
    assert len(d) == 6000 - 151
    rounds = 1
    now = 2.05
    while delay is not None:  # later sweeps go on, a slice each, until all are gone
        now += delay
        late, delay = d.due(now, pending)
        rounds += 1
    assert len(d) == 0 and sorted(looked) == list(range(6000))
    assert rounds >= 2.0 / 0.05
