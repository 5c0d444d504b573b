"""Regression tests for engine/adapter.py (docs/adapter-spec.md): the differential
test against a Python evaluator.

For each durable_rules defect the raw engine behaviour is shown first (in a subprocess
with a timeout where it crashes or hangs), then that the adapter makes it harmless. The
engine is real everywhere: no mocks. Helpers: tests/engine/adapter_helpers.py and
tests/engine/conftest.py."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.adapter import (
    get_engine,
)
from tests.engine.adapter_helpers import key

# ---------------------------------------------------------------------------------------
# differential test against a Python evaluator
# ---------------------------------------------------------------------------------------
_OPS = {
    "$eq": lambda a, b: a == b,
    "$neq": lambda a, b: a != b,
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}
_INT_FIELDS = ["i0", "i1", "i2", "i3"]
_STR_FIELDS = ["s0", "s1"]
_STR_VALUES = ["", "a", "ab", "ab ", "b", 'q"', "é"]


def _leaf(draw: Any) -> dict[str, Any]:
    if draw(st.booleans()):
        f, v = draw(st.sampled_from(_INT_FIELDS)), draw(st.integers(-2, 2))
    else:
        f, v = draw(st.sampled_from(_STR_FIELDS)), draw(st.sampled_from(_STR_VALUES))
    op = draw(st.sampled_from(sorted(_OPS)))
    return {f: v} if op == "$eq" else {op: {f: v}}


@st.composite
def _conditions(draw: Any, depth: int = 3) -> Any:
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return _leaf(draw)
    kind = draw(st.sampled_from(["$and", "$or"]))
    size = draw(st.integers(1, 25 if depth == 1 else 4))
    return {kind: [draw(_conditions(depth - 1)) for _ in range(size)]}


def _holds(cond: Any, fact: dict[str, Any]) -> bool:
    if cond is True:
        return True
    ((k, v),) = cond.items()
    if k == "$and":
        return all(_holds(c, fact) for c in v)
    if k == "$or":
        return any(_holds(c, fact) for c in v)
    op, ((f, lit),) = (k, v.items()) if k in _OPS else ("$eq", [(k, v)])
    return f in fact and _OPS[op](fact[f], lit)


_facts = st.fixed_dictionaries(
    {},
    optional={
        **{f: st.integers(-3, 3) for f in _INT_FIELDS},
        **{f: st.sampled_from(_STR_VALUES + ["c"]) for f in _STR_FIELDS},
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(st.one_of(_conditions(), st.just(True)), min_size=1, max_size=40),
    facts=st.lists(_facts, min_size=1, max_size=8),
)
def test_adapter_agrees_with_a_python_evaluator(rules, facts):
    engine = get_engine()
    named = {f"r.{i}": c for i, c in enumerate(rules)}
    h = engine.register(key(), named)
    try:
        for fact in facts:
            want = {rid for rid, c in named.items() if _holds(c, fact)}
            assert engine.match(h, fact) == want
    finally:
        engine.release(h)
