"""Golden decisions: every ``tests/cases/decisions/*.yaml`` case decided end to end.

A case file::

    policy: policies.yaml                          # relative to the repository root
    request: examples/requests/approve-prime.json  # a JSON file (root-relative) or inline
    expect:
      outcome: approve
      score: 500
      tier: A
      deposit_pct: "0.00"          # money and percentages as exact strings; null on decline
      deposit_amount: "0.00"
      approved_payment_term_days: 60
      reason_codes: []             # every reason code, in order
      escalation_level: null
      matched_rules: [...]         # every matched rule id (incl. scorecard bins), trail order

``outcome``, ``score``, ``tier``, ``deposit_pct``, ``deposit_amount``,
``approved_payment_term_days``, ``reason_codes``, ``escalation_level`` and ``matched_rules``
are required; ``escalation_chain``, ``escalation_sla_hours``, ``credit_limit``,
``exposure_after``, ``available_credit``, ``order_id`` and ``customer_id`` may be added.
Expected values were computed by hand from the policy (see each file's comment).

Also here: determinism (same request → identical ``comparable()``) and the exact boundary of
``tier_auto_approve_up_to`` (equal amount is not referred, one cent more is).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from rules.loader import load_file

# Also run under Python 3.12 by scripts/test (the Docker image's Python).
pytestmark = pytest.mark.smoke

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests" / "cases" / "decisions").glob("*.yaml"))
REQUIRED = ("outcome", "score", "tier", "deposit_pct", "deposit_amount",
            "approved_payment_term_days", "reason_codes", "escalation_level", "matched_rules")
OPTIONAL = ("escalation_chain", "escalation_sla_hours", "credit_limit", "exposure_after",
            "available_credit", "order_id", "customer_id")


@cache
def compiled(policy: str) -> Any:
    """The compiled policy at ``policy`` (root-relative), loaded once per test session."""
    from engine.evaluate import load

    return load(str(ROOT / policy))


def decide(policy: str, request: dict) -> Any:
    from engine.evaluate import evaluate

    return evaluate(compiled(policy), request, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
                    id_factory=lambda: "golden")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


def got_values(decision: Any) -> dict[str, Any]:
    """The decision's checkable values as JSON values (money as exact strings)."""
    d = decision.model_dump(mode="json")
    esc = d["escalation"] or {}
    return {
        "outcome": d["outcome"],
        "score": d["score"],
        "tier": d["tier"],
        "deposit_pct": d["deposit_pct"],
        "deposit_amount": d["deposit_amount"],
        "approved_payment_term_days": d["approved_payment_term_days"],
        "reason_codes": [r["code"] for r in d["reasons"]],
        "escalation_level": esc.get("level"),
        "escalation_chain": esc.get("chain"),
        "escalation_sla_hours": esc.get("sla_hours"),
        "matched_rules": [e["rule_id"] for e in d["trail"]["rules"] if e["matched"]],
        "credit_limit": d["credit_limit"],
        "exposure_after": d["exposure_after"],
        "available_credit": d["available_credit"],
        "order_id": d["order_id"],
        "customer_id": d["customer_id"],
    }


def load_case(path: Path) -> tuple[str, dict, dict]:
    data = load_file(path).data
    assert set(data) == {"policy", "request", "expect"}, f"{path.name}: keys {sorted(data)}"
    request = data["request"]
    if isinstance(request, str):
        request = read_json(ROOT / request)
    expect = data["expect"]
    missing = [k for k in REQUIRED if k not in expect]
    unknown = [k for k in expect if k not in REQUIRED + OPTIONAL]
    assert not missing and not unknown, f"{path.name}: missing {missing}, unknown {unknown}"
    for k in ("deposit_pct", "deposit_amount", "credit_limit", "exposure_after",
              "available_credit"):
        v = expect.get(k)
        assert v is None or isinstance(v, str), f"{path.name}: quote {k} (exact text), got {v!r}"
    return data["policy"], request, expect


def test_cases_exist() -> None:
    assert len(CASES) >= 13


@pytest.mark.parametrize("case_file", CASES, ids=[p.name for p in CASES])
def test_golden(case_file: Path) -> None:
    policy, request, expect = load_case(case_file)
    got = got_values(decide(policy, request))
    assert {k: got[k] for k in expect} == expect


# -- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["approve-prime", "refer-weak-large-order", "decline-hard-cap"])
def test_same_request_same_decision(name: str) -> None:
    request = read_json(ROOT / "examples" / "requests" / f"{name}.json")
    original = copy.deepcopy(request)
    first = decide("policies.yaml", request).comparable()
    second = decide("policies.yaml", request).comparable()
    assert first == second
    assert request == original  # evaluation does not modify the request
    # a separately loaded and compiled copy of the same policy decides the same way
    from engine.evaluate import evaluate, load

    again = evaluate(load(str(ROOT / "policies.yaml")), copy.deepcopy(request)).comparable()
    assert again == first
    # and the JSON is stable text (money never becomes a float)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert isinstance(first["order_amount"], str)


def test_decision_ids_and_clock_are_the_only_differences() -> None:
    from engine.evaluate import evaluate

    request = read_json(ROOT / "examples" / "requests" / "approve-prime.json")
    a = evaluate(compiled("policies.yaml"), request).model_dump(mode="json")
    b = evaluate(compiled("policies.yaml"), request).model_dump(mode="json")
    assert a["decision_id"] != b["decision_id"]
    for d in (a, b):
        d.pop("decision_id")
        d.pop("evaluated_at")
    assert a == b


# -- exact boundary of the tier's auto-approval amount -----------------------------------------

# Customer profiles (with a limit high enough that the order amount never changes the
# utilisation bin) whose only possible referral is REF_OVER_AUTO_APPROVE.
PROFILES = {
    # 100 + 120 + 70 + 80 + 60 + 50 + 20 = 500
    "A": {"credit_limit": "100000000.00", "exposure": "0.00", "years_in_business": 12,
          "risk_class": "low"},
    # 100 + 60 + 30 + 80 + 60 + 50 + 10 = 390
    "B": {"credit_limit": "100000000.00", "exposure": "0.00", "years_in_business": 3,
          "risk_class": "medium", "disputed_invoices": 1},
    # 100 + 0 + 50 + 0 + 60 + 50 + 10 = 270
    "C": {"credit_limit": "100000000.00", "exposure": "0.00", "years_in_business": 6,
          "risk_class": "high", "avg_days_late": 25, "disputed_invoices": 1},
    # 100 + 0 + 0 + 0 + 60 + 50 + 20 = 230 (orders stay at most 50,000: no REF_TIER_D_LARGE)
    "D": {"credit_limit": "100000000.00", "exposure": "0.00", "years_in_business": 1,
          "risk_class": "high", "avg_days_late": 25},
}


def _matched(decision: Any, rule_id: str) -> bool:
    return next(e.matched for e in decision.trail.rules if e.rule_id == rule_id)


@pytest.mark.parametrize("tier", sorted(PROFILES))
def test_auto_approve_boundary_is_exact(tier: str) -> None:
    policy = compiled("policies.yaml").policy
    limit = next(t.auto_approve_up_to for t in policy.tiers if t.tier == tier)
    cent = Decimal("0.01")
    for amount, over in ((limit - cent, False), (limit, False), (limit + cent, True)):
        request = {"order": {"amount": f"{amount:.2f}", "payment_term_days": 0},
                   "customer": PROFILES[tier]}
        d = decide("policies.yaml", request)
        assert d.tier == tier, (amount, d.score)
        assert _matched(d, "REF_OVER_AUTO_APPROVE") is over, amount
        assert d.outcome == ("refer" if over else "approve"), amount
        assert [r.code for r in d.reasons if r.stage == "referral"] == (
            ["REF_OVER_AUTO_APPROVE"] if over else [])


def test_escalation_level_boundary() -> None:
    """The level whose up_to equals the amount decides it; one cent more needs the next."""
    # a limit of 99,999.99: each order goes just over it (REF_OVER_LIMIT, far below the
    # 200 % hard cap), so the escalation basis, order.amount, picks the level
    customer = {"credit_limit": "99999.99", "exposure": "0.00", "years_in_business": 12,
                "risk_class": "low"}
    for amount, level in (("100000.00", "credit_analyst"), ("100000.01", "credit_manager")):
        request = {"order": {"amount": amount, "payment_term_days": 0}, "customer": customer}
        d = decide("policies.yaml", request)
        assert d.outcome == "refer"
        assert d.escalation is not None and d.escalation.level == level, amount
