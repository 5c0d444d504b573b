"""Regression tests for engine/adapter.py (docs/adapter-spec.md): interface basics and
items 1-2, strings vs numbers, floats, big ints, long strings.

For each durable_rules defect the raw engine behaviour is shown first (in a subprocess
with a timeout where it crashes or hangs), then that the adapter makes it harmless. The
engine is real everywhere: no mocks. Helpers: tests/engine/adapter_helpers.py and
tests/engine/conftest.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine import adapter
from engine.adapter import (
    EngineError,
    EngineValueError,
    get_engine,
)
from tests.engine.adapter_helpers import key, raw_match


# ---------------------------------------------------------------------------------------
# interface basics
# ---------------------------------------------------------------------------------------
def test_engine_version_and_singleton():
    assert get_engine() is get_engine()
    assert get_engine().engine_version == "durable_rules 2.0.28"


def test_rule_ids_are_returned_verbatim(adapter_engine, adapter_reg):
    rules = {"ko.age#1": {"$lt": {"f0": 18}}, "bin-2.x": {"f1": "high"}, "always": True}
    h = adapter_reg(rules)
    assert adapter_engine.match(h, {"f0": 17, "f1": "high"}) == {"ko.age#1", "bin-2.x", "always"}
    assert adapter_engine.match(h, {"f0": 18, "f1": "low"}) == {"always"}
    assert isinstance(adapter_engine.match(h, {"f0": 1}), frozenset)


def test_same_key_returns_same_handle_and_other_rules_are_refused(adapter_engine):
    k = key()
    h = adapter_engine.register(k, {"a": {"f0": 1}})
    try:
        assert adapter_engine.register(k, {"a": {"f0": 1}}) is h
        with pytest.raises(EngineError) as err:
            adapter_engine.register(k, {"a": {"f0": 2}})
        assert err.value.code == "engine_key"
    finally:
        adapter_engine.release(h)


@pytest.mark.parametrize("bad", ["", "a-b", "a.b", "é", 5, "x" * 121])
def test_bad_keys_are_refused(adapter_engine, bad):
    with pytest.raises(EngineError) as err:
        adapter_engine.register(bad, {"a": {"f0": 1}})
    assert err.value.code == "engine_key"


@pytest.mark.parametrize(
    "rules",
    [
        {"a": {"sid": 1}},
        {"a": {"id": 1}},
        {"a": {"cg__fact": 1}},
        {"a": {"a.b": 1}},
        {"a": {"$gt": {"1x": 1}}},
    ],
)
def test_reserved_or_odd_field_names_are_refused(adapter_engine, rules):
    with pytest.raises(EngineError) as err:
        adapter_engine.register(key(), rules)
    assert err.value.code == "engine_field"


def test_empty_ruleset_and_always_rules(adapter_engine, adapter_reg):
    assert adapter_engine.match(adapter_reg({}), {"f0": 1}) == frozenset()
    h = adapter_reg({"t": True, "n": {"$or": [True, {"f0": 5}]}, "m": {"$and": [True]}})
    assert adapter_engine.match(h, {}) == {"t", "n", "m"}


def test_missing_field_makes_every_comparison_false_also_neq(adapter_engine, adapter_reg):
    h = adapter_reg({"neq": {"$neq": {"f0": 1}}, "or": {"$or": [{"f0": 1}, {"f1": 2}]}})
    assert adapter_engine.match(h, {}) == frozenset()
    assert adapter_engine.match(h, {"f1": 2}) == {"or"}
    assert adapter_engine.match(h, {"f0": 2}) == {"neq"}


def test_fact_fields_the_rules_do_not_read_are_validated_but_ignored(adapter_engine, adapter_reg):
    h = adapter_reg({"a": {"f0": 1}})
    assert adapter_engine.match(h, {"f0": 1, "other": "x" * 100_000, "n": 2**62}) == {"a"}
    with pytest.raises(EngineValueError):
        adapter_engine.match(h, {"f0": 1, "other": 1.5})


# ---------------------------------------------------------------------------------------
# 1. strings vs numbers (and string ordering)
# ---------------------------------------------------------------------------------------
def test_raw_engine_compares_strings_with_numbers_wrongly():
    assert raw_match({"gt": {"$gt": {"n": 10000}}}, {"n": "9000"}) == {"gt"}
    assert raw_match({"eq": {"n": 10}}, {"n": ""}) == {"eq"}


def test_adapter_refuses_mixed_types_for_one_field(adapter_engine):
    with pytest.raises(EngineError) as err:
        adapter_engine.register(key(), {"a": {"$gt": {"n": 10000}}, "b": {"n": "x"}})
    assert err.value.code == "engine_type"
    with pytest.raises(EngineError) as err:
        adapter_engine.register(key(), {"a": {"$or": [{"n": 1}, {"$neq": {"n": "1"}}]}})
    assert err.value.code == "engine_type"


def test_adapter_refuses_a_fact_value_of_the_other_type(adapter_engine, adapter_reg):
    h = adapter_reg({"gt": {"$gt": {"n": 10000}}, "s": {"s": "x"}})
    with pytest.raises(EngineValueError) as err:
        adapter_engine.match(h, {"n": "9000"})
    assert err.value.code == "engine_value"
    with pytest.raises(EngineValueError):
        adapter_engine.match(h, {"n": 1, "s": 10})
    assert adapter_engine.match(h, {"n": 10001, "s": "x"}) == {"gt", "s"}


def test_raw_engine_orders_prefix_strings_wrongly():
    # strncmp over the longer length on raw JSON text: "ab" < "ab " comes out false
    assert "ab" < "ab "
    assert raw_match({"lt": {"$lt": {"s": "ab "}}}, {"s": "ab"}) == set()


STRINGS = ["", " ", "a", "ab", "ab ", "ab!", "abc", 'a"b', "a\\b", "a\nb", "é", "z", "\x00"]


def test_adapter_string_comparisons_follow_python(adapter_engine, adapter_reg):
    rules = {}
    for i, lit in enumerate(STRINGS):
        for op in ("$eq", "$neq", "$gt", "$gte", "$lt", "$lte"):
            rules[f"{op}{i}"] = {"s": lit} if op == "$eq" else {op: {"s": lit}}
    h = adapter_reg(rules)
    ops = {
        "$eq": str.__eq__,
        "$neq": str.__ne__,
        "$gt": str.__gt__,
        "$gte": str.__ge__,
        "$lt": str.__lt__,
        "$lte": str.__le__,
    }
    for value in STRINGS:
        want = {
            f"{op}{i}" for i, lit in enumerate(STRINGS) for op, f in ops.items() if f(value, lit)
        }
        assert adapter_engine.match(h, {"s": value}) == want, value


# ---------------------------------------------------------------------------------------
# 2. floats, big ints, long strings
# ---------------------------------------------------------------------------------------
def test_raw_engine_caps_big_ints_silently():
    assert raw_match({"max": {"n": 2**63 - 1}}, {"n": 2**64 + 5}) == {"max"}


def test_raw_engine_truncates_string_lengths_to_16_bits():
    assert raw_match({"eq": {"s": "a" * 10}}, {"s": "a" * 65546}) == {"eq"}


@pytest.mark.parametrize(
    "value", [2**63, -(2**63) - 1, 2**100, 1.0, 0.5, Decimal("1"), True, False, None, [1], b"x"]
)
def test_adapter_refuses_unrepresentable_fact_values(adapter_engine, value, adapter_reg):
    h = adapter_reg({"a": {"$gte": {"n": 0}}})
    with pytest.raises(EngineValueError) as err:
        adapter_engine.match(h, {"n": value})
    assert err.value.code == "engine_value"


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 1.5, Decimal("2"), True, None])
def test_adapter_refuses_unrepresentable_literals(adapter_engine, value):
    with pytest.raises(EngineValueError):
        adapter_engine.register(key(), {"a": {"$gt": {"n": value}}})
    with pytest.raises(EngineValueError):
        adapter_engine.register(key(), {"a": {"n": value}})


def test_int64_boundaries_are_exact(adapter_engine, adapter_reg):
    top, bottom = 2**63 - 1, -(2**63)
    h = adapter_reg(
        {
            "eq_top": {"n": top},
            "gte_top": {"$gte": {"n": top}},
            "gt_below": {"$gt": {"n": top - 1}},
            "eq_bottom": {"n": bottom},
            "lt_above": {"$lt": {"n": bottom + 1}},
        }
    )
    assert adapter_engine.match(h, {"n": top}) == {"eq_top", "gte_top", "gt_below"}
    assert adapter_engine.match(h, {"n": top - 1}) == frozenset()
    assert adapter_engine.match(h, {"n": bottom}) == {"eq_bottom", "lt_above"}
    assert adapter_engine.match(h, {"n": bottom + 1}) == frozenset()


def test_long_and_unencodable_strings(adapter_engine, adapter_reg):
    limit = adapter.MAX_STR_BYTES
    h = adapter_reg({"eq": {"s": "a" * limit}})
    assert adapter_engine.match(h, {"s": "a" * limit}) == {"eq"}
    assert adapter_engine.match(h, {"s": "a" * (limit - 1)}) == frozenset()
    for bad in ("a" * (limit + 1), "a" * 65546, "é" * (limit // 2 + 1), "\ud800"):
        with pytest.raises(EngineValueError):
            adapter_engine.match(h, {"s": bad})
    with pytest.raises(EngineValueError):
        adapter_engine.register(key(), {"eq": {"s": "a" * 65546}})
