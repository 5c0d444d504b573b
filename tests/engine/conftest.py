"""Fixtures of the engine/adapter.py regression tests: the process-wide engine and
``adapter_reg(rules)``, which registers under a fresh key and releases after the test."""

from __future__ import annotations

from typing import Any

import pytest

from engine.adapter import (
    DurableRulesEngine,
    RulesetHandle,
    get_engine,
)
from tests.engine.adapter_helpers import key


@pytest.fixture
def adapter_engine() -> DurableRulesEngine:
    """The process-wide engine."""
    return get_engine()


@pytest.fixture
def adapter_reg(adapter_engine):
    """``adapter_reg(rules)`` registers under a fresh key; released after the test."""
    made: list[RulesetHandle] = []

    def reg(rules: dict[str, Any]) -> RulesetHandle:
        handle = adapter_engine.register(key(), rules)
        made.append(handle)
        return handle

    yield reg
    for handle in made:
        adapter_engine.release(handle)
