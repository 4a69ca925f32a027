"""Property tests for the pure parts: restart intensity and backoff delays."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisors import Backoff, Intensity


def model(times: list[float], max_restarts: int, within_s: float) -> list[bool]:
    """Brute force: at each restart, count every restart so far inside the window."""
    verdicts = []
    for i, t in enumerate(times):
        in_window = sum(1 for r in times[: i + 1] if t - r <= within_s)
        verdicts.append(in_window <= max_restarts)
    return verdicts


gaps = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=20.0, allow_nan=False)),
    max_size=60,
)


@given(
    gaps=gaps,
    max_restarts=st.integers(min_value=0, max_value=8),
    within_s=st.floats(min_value=0.0, max_value=30.0, allow_nan=False),
    start=st.floats(min_value=0.0, max_value=2e9, allow_nan=False),
)
def test_intensity_matches_model(
    gaps: list[float], max_restarts: int, within_s: float, start: float
) -> None:
    times, t = [], start
    for gap in gaps:
        t += gap
        times.append(t)
    intensity = Intensity(max_restarts, within_s)
    assert [intensity.record(x) for x in times] == model(times, max_restarts, within_s)
    assert intensity.count() <= len(times)


def test_intensity_examples() -> None:
    i = Intensity(max_restarts=2, within_s=5.0)
    assert [i.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, False]
    i = Intensity(max_restarts=2, within_s=5.0)
    assert [i.record(t) for t in (0.0, 1.0, 6.5, 7.0, 7.5)] == [True, True, True, True, False]
    assert Intensity(0, 5.0).record(0.0) is False
    with pytest.raises(ValueError):
        Intensity(-1, 1.0)


@given(
    n=st.integers(min_value=1, max_value=5000),
    seed=st.integers(min_value=0, max_value=2**32),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_backoff_delay_bounds(n: int, seed: int, jitter: float) -> None:
    b = Backoff(initial_s=0.1, max_s=5.0, jitter=jitter, factor=2.0)
    base = min(5.0, 0.1 * 2.0 ** min(n - 1, 100))
    d = b.delay(n, random.Random(seed))
    assert base * (1 - jitter) - 1e-12 <= d <= base * (1 + jitter) + 1e-12
    assert d == b.delay(n, random.Random(seed))  # seeded: reproducible


def test_backoff_grows_then_caps() -> None:
    b = Backoff(initial_s=0.1, max_s=1.0, jitter=0.0, factor=2.0)
    assert [b.base(n) for n in (1, 2, 3, 4, 5, 10_000)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert Backoff(initial_s=0.0).delay(3, random.Random(0)) == 0.0
