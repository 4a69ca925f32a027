"""`json_of` is `model_dump(mode="json")`: the same keys, values, types and order."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aegis_actors.messages as m
from aegis_actors.messages import Msg, json_of

_ENUMS = [m.Direction.UP, m.Action.SELL, m.Outcome.HOLD, m.Posture.DEFENSIVE]
_SCALAR = st.one_of(
    st.text(max_size=5),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(-0.0),
    st.sampled_from(_ENUMS),
)
_ANY = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
    ),
    max_leaves=6,
)
# what each field may be given: mostly its own type, sometimes a near miss
_FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2))
_STR = st.one_of(st.text(max_size=8), st.sampled_from(_ENUMS))
_STAMPS = st.dictionaries(st.sampled_from(["t0", "context", "analysis"]), _FLOAT, max_size=3)
_META = st.one_of(
    st.dictionaries(st.text(max_size=4), _SCALAR, max_size=4),
    st.dictionaries(st.text(max_size=4), _ANY, max_size=3),
)


def _value(name: str, ann: Any) -> st.SearchStrategy[Any]:
    text = str(ann)
    if name == "stamps":
        return _STAMPS
    if name == "meta":
        return _META
    if "None" in text and "dict" not in text:
        inner = st.one_of(_FLOAT, _STR) if "float" in text else st.sampled_from(_ENUMS)
        return st.one_of(st.none(), inner)
    if ann is float:
        return _FLOAT
    if ann is str:
        return _STR
    if ann is bool:
        return st.one_of(st.booleans(), st.integers(0, 1))
    if ann is int:
        return st.one_of(st.integers(-5, 5), st.booleans())
    if isinstance(ann, type) and issubclass(ann, m.StrEnum):
        return st.one_of(st.sampled_from(list(ann)), st.sampled_from([x.value for x in ann]))
    if "list[str]" in text:
        return st.lists(_STR, max_size=3)
    return _ANY


def _messages(cls: type[Msg]) -> st.SearchStrategy[Msg]:
    fields = {name: _value(name, info.annotation) for name, info in cls.model_fields.items()}
    return st.fixed_dictionaries(fields).map(lambda kw: cls.trusted(**kw))


CLASSES = [m.Analysis, m.Verdict, m.Decision, m.EventDone, m.StageFailure, m.Tick, m.Alert]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic on the near misses
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CLASSES).flatmap(_messages))
def test_json_of_is_the_json_dump(msg: Msg) -> None:
    want = type(msg).__pydantic_serializer__.to_python(msg, mode="json")
    assert repr(json_of(msg)) == repr(want)  # repr: 1 is not 1.0, nan equals nan


def test_json_of_takes_the_fast_way_for_our_own_values() -> None:
    a = m.Analysis.trusted(
        event_id="e",
        stamps={"t0": 1.0},
        symbol="X",
        direction=m.Direction.UP,
        expected_move_pct=0.5,
        confidence=0.5,
        pattern="p",
        risk_score=0.1,
        rationale="r",
        meta={"backend": "rules", "tokens_in": 3, "cost_usd": 0.25, "ok": True, "x": None},
    )
    out = json_of(a)
    assert out == a.model_dump(mode="json") and out["direction"].__class__ is str
    assert out["stamps"] is not a.stamps and out["meta"] is not a.meta  # copies, as a dump's
    assert m._JSON[m.Analysis].__name__ == "dump"  # the generated dumper, not the serializer
    bad = a.replaced(meta={"cost": math.inf}, confidence=1)
    assert repr(json_of(bad)) == repr(bad.model_dump(mode="json"))  # {'cost': None}, 1.0
