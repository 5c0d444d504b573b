"""The evaluation path gives exactly what the interpretive path (tests/engine/legacy_path.py) gave.

For every request below, ``engine.evaluate.evaluate`` and the frozen pre-issue-7 path must
agree exactly: the same decision (``==``), byte-identical ``model_dump_json()``, the same
``model_dump(mode="json")``, or the same ``InputErrors`` (every path, code and message, in
order) / ``EvaluationError`` (code and message). Every decision must also survive the
service's round trip ``Decision.model_validate(decision.model_dump(mode="json"))``.

Requests: every golden case and example request, the policy tests' requests, the first 300
AR replay requests and all 1000 German credit rows (when ../shared/data is present), and
hypothesis-generated requests (valid ones near the policy's thresholds, and broken ones:
wrong types, floats, nulls, unknown fields, control characters, huge numbers) on several
policies covering every stage, both ``over_cap`` modes, deposit amounts, escalation
minimum levels, a zero-minor-unit currency and derived int/decimal/money values.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.decision import Decision
from engine.evaluate import EvaluationError, evaluate, load
from engine.inputs import InputErrors
from rules.compile import compile_policy
from rules.loader import load_file
from rules.validate import load_policy_text
from tests.engine import legacy_path
from tests.engine.reference import load as load_yaml
from tests.engine.test_property import request_strategy

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
AR_CSV = SHARED / "ar-invoices" / "accounts-receivable.csv"
GERMAN = SHARED / "german-credit" / "german.data"
DERANDOMIZE = not os.environ.get("CG_HYPOTHESIS_RANDOM")
CLOCK = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
BASE = (ROOT / "tests" / "cases" / "policy_errors" / "base.yaml").read_text()

# base.yaml grown to use every feature the decision builder has: a string input, derived
# int and decimal values, `in`/`not in`, a term comparing two enums, a rule that can never
# match, deposit percentages with decimals, a referral with a minimum level, term rules
# over the cap sent to a person, and a currency without minor units (JPY).
FEATURES = (
    BASE.replace("currency: EUR", "currency: JPY")
    .replace(
        "  customer.blacklisted: {type: bool, default: false}\n",
        "  customer.blacklisted: {type: bool, default: false}\n"
        "  customer.region: {type: string, default: north}\n"
        "  customer.rating: {type: \"enum[low, high]\", default: low}\n"
        "  customer.score_card: {type: decimal, min: 0, max: 10, default: 5}\n",
    )
    .replace(
        "  utilisation: {expr",
        "  dpd_weeks: {expr: customer.days_past_due / 7, if_zero_divisor: 0}\n"
        "  dpd_plus: {expr: customer.days_past_due + 3}\n"
        "  half_limit: {expr: customer.credit_limit / 2}\n"
        "  utilisation: {expr",
    )
    .replace(
        "    when: customer.blacklisted\n",
        "    when: customer.blacklisted or customer.region in [\"void\", \"closed\"]\n"
        "  - id: KO_NEVER\n"
        "    description: Never\n"
        "    reason_code: KO_NEVER\n"
        "    when: false\n",
    )
    .replace(
        "    deposit_amount: exposure_after - customer.credit_limit\n",
        "    deposit_amount: exposure_after - customer.credit_limit\n"
        "  - id: DEP_RATING\n"
        "    description: Rating differs from risk class\n"
        "    reason_code: DEP_RATING\n"
        "    when: customer.rating != customer.risk_class and customer.score_card < 4.5\n"
        "    deposit_pct: 12.5\n"
        "  - id: DEP_HALF\n"
        "    description: A fifth of the order when far from the limit\n"
        "    reason_code: DEP_HALF\n"
        "    when: order.amount * 2 > half_limit and dpd_weeks >= 1.5\n"
        "    deposit_amount: order.amount / 5\n",
    )
    .replace("  over_cap: cap\n", "  over_cap: refer\n")
    .replace(
        "      max_payment_term_days: 0\n",
        "      max_payment_term_days: 0\n"
        "    - id: TERM_REGION\n"
        "      description: Southern customers get 20 days\n"
        "      reason_code: TERM_REGION\n"
        "      when: customer.region not in [\"north\"] and dpd_plus > 4\n"
        "      max_payment_term_days: 20\n",
    )
    .replace(
        "    when: order.amount > tier_auto_approve_up_to\n",
        "    when: order.amount > tier_auto_approve_up_to\n"
        "  - id: REF_MANAGER\n"
        "    description: Needs a manager\n"
        "    reason_code: REF_MANAGER\n"
        "    when: tier == \"B\" and customer.score_card > 7\n"
        "    min_level: manager\n",
    )
)
SHIPPED_REFER = (ROOT / "policies.yaml").read_text().replace(
    "  over_cap: cap ", "  over_cap: refer"
)
TEXTS = {
    "policies.yaml": (ROOT / "policies.yaml").read_text(),
    "policies-over-cap-refer": SHIPPED_REFER,
    "base.yaml": BASE,
    "features": FEATURES,
    "german-credit": (ROOT / "examples" / "german-credit" / "policy.yaml").read_text(),
}
_COMPILED: dict[str, Any] = {}


def compiled(name: str) -> Any:
    if name not in _COMPILED:
        _COMPILED[name] = compile_policy(load_policy_text(TEXTS[name], f"{name}.yaml"))
    return _COMPILED[name]


def _outcome(fn: Any, policy: Any, request: Any) -> Any:
    try:
        return fn(policy, request, clock=lambda: CLOCK, id_factory=lambda: "same-id")
    except (InputErrors, EvaluationError) as exc:
        return exc


def assert_same(policy: Any, request: Any) -> Decision | None:
    """Decide ``request`` on both paths and assert they agree exactly (module docstring).
    Returns the decision, or None when both paths refused the request."""
    before = copy.deepcopy(request)
    old = _outcome(legacy_path.evaluate, policy, copy.deepcopy(request))
    new = _outcome(evaluate, policy, request)
    assert request == before, "evaluate modified the request"
    assert type(new) is type(old), (request, old, new)
    if isinstance(old, InputErrors):
        assert [(e.path, e.code, e.message) for e in new.errors] == [
            (e.path, e.code, e.message) for e in old.errors
        ]
        assert str(new) == str(old)
        return None
    if isinstance(old, EvaluationError):
        assert (new.code, new.message) == (old.code, old.message)
        return None
    assert new.model_dump_json() == old.model_dump_json()
    assert new.model_dump(mode="json") == old.model_dump(mode="json")
    assert new == old
    assert [type(r) for r in new.trail.rules] == [type(r) for r in old.trail.rules]
    stored = new.model_dump(mode="json")
    back = Decision.model_validate(stored)
    assert back == new
    assert back.model_dump(mode="json") == stored
    assert Decision.model_validate_json(new.model_dump_json()).model_dump_json() == (
        new.model_dump_json()
    )
    return new


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


# -- fixed requests ----------------------------------------------------------------------------


def test_golden_cases_and_example_requests_are_identical() -> None:
    outcomes = set()
    for case in sorted((ROOT / "tests" / "cases" / "decisions").glob("*.yaml")):
        data = load_file(case).data
        request = data["request"]
        if isinstance(request, str):
            request = _read_json(ROOT / request)
        policy = load(str(ROOT / data["policy"]))
        d = assert_same(policy, request)
        assert d is not None, case.name
        outcomes.add(d.outcome)
    shipped = compiled("policies.yaml")
    for path in sorted((ROOT / "examples" / "requests").glob("*.json")):
        assert assert_same(shipped, _read_json(path)) is not None, path.name
        assert assert_same(compiled("policies-over-cap-refer"), _read_json(path)) is not None
    assert outcomes == {"approve", "refer", "decline"}


def test_policy_test_cases_are_identical() -> None:
    cases = load_file(ROOT / "policies.tests.yaml").data["cases"]
    assert len(cases) >= 10
    for case in cases:
        request = case["request"]
        if isinstance(request, str):
            request = _read_json(ROOT / request)
        assert_same(compiled("policies.yaml"), request)


@pytest.mark.skipif(not AR_CSV.exists(), reason=f"shared data missing: {AR_CSV}")
def test_receivables_replay_is_identical() -> None:
    import itertools

    sys.path.insert(0, str(ROOT / "examples" / "receivables"))
    try:
        from positions import replay_requests
    finally:
        sys.path.remove(str(ROOT / "examples" / "receivables"))
    outcomes = set()
    for request, _ in itertools.islice(replay_requests(AR_CSV), 300):
        outcomes.add(assert_same(compiled("policies.yaml"), request).outcome)
    assert {"approve", "refer"} <= outcomes


@pytest.mark.skipif(not GERMAN.exists(), reason=f"shared data missing: {GERMAN}")
def test_german_credit_rows_are_identical() -> None:
    from analysis.datasets import read_dataset

    outcomes = set()
    for request, _ in read_dataset(GERMAN):
        outcomes.add(assert_same(compiled("german-credit"), request).outcome)
    assert outcomes == {"approve", "refer", "decline"}


def test_every_zero_divisor_note_and_escalation_is_identical() -> None:
    base = {"order": {"amount": "5000", "payment_term_days": 90},
            "customer": {"credit_limit": "0", "exposure": "0", "risk_class": "high",
                         "days_past_due": 0}}
    d = assert_same(compiled("features"), base)
    assert d is not None and d.trail.notes
    base["customer"].update(credit_limit="1000", days_past_due=14, score_card="7.5",
                            rating="high", region="south")
    d = assert_same(compiled("features"), base)
    assert d is not None and d.outcome == "refer" and d.escalation is not None


# -- generated requests ------------------------------------------------------------------------

_BAD_VALUES = st.sampled_from([
    None, 1.5, True, False, "abc", "1e3", "12.345", "-0.00", "-0", "１２", 10**20, -(10**16),
    "", "x" * 1001, "a\x00b", "\ud800", Decimal("NaN"), Decimal("Infinity"), Decimal("1E+3"),
    Decimal("-0.000"), [], {}, "0.0000001", 2**63, "high", "low", "999999999999999.99",
    " 12", "+5", ".5", "5.", 0, 7,
])


def _broken(valid: st.SearchStrategy, doc: dict) -> st.SearchStrategy:
    """A valid request with some fields replaced by bad values, unknown fields or groups,
    a wrong currency or identifier, or no dict at all."""
    paths = list(doc["inputs"])

    @st.composite
    def build(draw: Any) -> Any:
        request = copy.deepcopy(draw(valid))
        for path in draw(st.lists(st.sampled_from(paths), max_size=3)):
            group, name = path.split(".")
            request.setdefault(group, {})[name] = draw(_BAD_VALUES)
        extra = draw(st.sampled_from([
            None, ("order", "currency", "USD"), ("order", "currency", doc["currency"]),
            ("order", "currency", None), ("order", "id", "SO-1"), ("order", "id", 5),
            ("order", "id", "x\ny"), ("customer", "id", "C 1"), ("customer", "id", None),
            ("customer", "credit_limt", "5"), ("shipping", "x", 1), ("order", "amount", None),
        ]))
        if extra is not None:
            group, name, value = extra
            if group in request and not isinstance(request[group], dict):
                request[group] = {}
            request.setdefault(group, {})[name] = value
        shape = draw(st.sampled_from(["dict"] * 8 + ["list", "group-list", "empty"]))
        if shape == "list":
            return [request]
        if shape == "group-list":
            request["customer"] = ["not", "a", "dict"]
        if shape == "empty":
            return {}
        return request

    return build()


@pytest.mark.parametrize("name", ["policies.yaml", "base.yaml", "features", "german-credit"])
def test_generated_requests_are_identical(name: str) -> None:
    policy = compiled(name)
    doc = load_yaml_text(TEXTS[name])
    valid = request_strategy(doc, TEXTS[name], policy.policy.minor_units)
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, derandomize=DERANDOMIZE,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.one_of(valid, _broken(valid, doc)))
    def check(request: Any) -> None:
        d = assert_same(policy, request)
        seen.add("refused" if d is None else d.outcome)

    check()
    assert "refused" in seen and len(seen) >= 3, seen


def load_yaml_text(text: str) -> dict:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        return load_yaml(f.name)
    finally:
        os.unlink(f.name)


# -- the pieces: trusted models, scorecard, caller-supplied id and clock -------------------------


def test_trusted_models_equal_validated_and_constructed_ones() -> None:
    from engine.decision import Escalation, PolicyRef, Reason, Trail, TrailEntry, trusted

    d = assert_same(compiled("features"), {
        "order": {"amount": "5000", "payment_term_days": 90},
        "customer": {"credit_limit": "1000", "exposure": "0", "risk_class": "high",
                     "days_past_due": 14, "score_card": "7.5", "rating": "high"}})
    assert d is not None and d.escalation is not None and d.reasons
    for model, instance in [(Decision, d), (Trail, d.trail), (Reason, d.reasons[0]),
                            (Escalation, d.escalation), (PolicyRef, d.policy)]:
        values = {name: getattr(instance, name) for name in model.model_fields}
        made = trusted(model, dict(values))
        for other in (model(**values), model.model_construct(**values)):
            assert made == other
            assert list(made.__dict__) == list(other.__dict__) == list(model.model_fields)
            assert made.model_fields_set == other.model_fields_set
            assert made.model_dump_json() == other.model_dump_json()
        # given in another order: re-ordered into declaration order
        shuffled = trusted(model, dict(reversed(list(values.items()))))
        assert list(shuffled.__dict__) == list(model.model_fields) and shuffled == made
        with pytest.raises(Exception, match="frozen"):
            made.__setattr__(next(iter(values)), "x")
        with pytest.raises(TypeError, match="missing"):
            trusted(model, dict(list(values.items())[1:]))
        with pytest.raises(TypeError, match="unknown"):
            trusted(model, {**values, "extra": 1})
    assert all(type(r) is TrailEntry for r in d.trail.rules)
    assert type(d.trail.rules) is tuple


def test_scorecard_matches_the_interpreted_one_on_any_set_of_bins() -> None:
    policy = compiled("policies.yaml")
    others = ["KO_HARD_CAP", "REF_OVER_LIMIT", "DEP_NEW_CUSTOMER"]
    outcomes = set()

    @st.composite
    def matched_sets(draw: Any) -> set[str]:
        """Mostly one bin per factor, sometimes none or two, plus other rule ids."""
        out = set(draw(st.sets(st.sampled_from(others))))
        for f in policy.policy.factors:
            k = draw(st.sampled_from([1] * 12 + [0, 2]))
            out |= set(draw(st.lists(st.sampled_from(f.bin_ids), min_size=k, max_size=k,
                                     unique=True)))
        return out

    @settings(max_examples=400, deadline=None, derandomize=DERANDOMIZE)
    @given(matched_sets())
    def check(matched: set[str]) -> None:
        try:
            old = legacy_path.score_and_tier(policy.policy, matched)
        except Exception as exc:  # noqa: BLE001 - compared below
            old = exc
        try:
            new = policy.scorecard(matched)
        except Exception as exc:  # noqa: BLE001 - compared below
            new = exc
        if isinstance(old, Exception):
            assert (type(new).__name__, str(new)) == (type(old).__name__, str(old))
            outcomes.add("error")
            return
        assert (new.score, new.tier) == (old.score, old.tier)
        assert [(r.bin_id, r.points) for r in new.factors] == [
            (r.bin_id, r.points) for r in old.factors]
        assert [r.bin_id for r in new.reasons] == [r.bin_id for r in old.reasons]
        assert policy.scorecard.stage_two_values(new) == old.stage_two_values(2)
        outcomes.add("scored")

    check()
    # every factor's bin, one each: always scored
    one_each = {f.bin_ids[-1] for f in policy.policy.factors}
    assert policy.scorecard(one_each).score == legacy_path.score_and_tier(
        policy.policy, one_each).score
    assert outcomes == {"error", "scored"}


@pytest.mark.parametrize("clock, ident", [
    (lambda: "2026-11-29T12:30:00+02:00", lambda: "id"),  # text: validated, parsed
    (lambda: datetime(2026, 11, 29, 12, 30), lambda: "id"),  # naive
    (lambda: datetime(2026, 11, 29, 12, 30, tzinfo=UTC), lambda: 5),  # not text: refused
    (lambda: 5, lambda: "id"),
])
def test_caller_clock_and_id_are_treated_as_before(clock: Any, ident: Any) -> None:
    request = _read_json(ROOT / "examples" / "requests" / "refer-over-limit.json")
    policy = compiled("policies.yaml")
    results = []
    for fn in (legacy_path.evaluate, evaluate):
        try:
            results.append(fn(policy, copy.deepcopy(request), clock=clock, id_factory=ident))
        except EvaluationError as exc:
            results.append((exc.code, exc.message))
    old, new = results
    if isinstance(old, tuple):
        assert new == old
    else:
        assert new.model_dump_json() == old.model_dump_json() and new == old


def test_default_clock_and_id() -> None:
    request = _read_json(ROOT / "examples" / "requests" / "approve-prime.json")
    d = evaluate(compiled("policies.yaml"), request)
    assert d.evaluated_at.tzinfo is UTC
    assert d.model_dump(mode="json")["evaluated_at"].endswith("Z")
    import uuid

    assert uuid.UUID(d.decision_id).version == 4
    assert Decision.model_validate(d.model_dump(mode="json")) == d
