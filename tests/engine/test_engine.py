"""End-to-end engine behaviour: exact money, fail-closed inputs, threads, size limits.

Everything runs through the real pipeline: YAML → validate → compile → durable_rules.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from engine.evaluate import EvaluationError, evaluate, load
from engine.inputs import InputErrors
from rules.compile import compile_policy
from rules.validate import load_policy_text

ROOT = Path(__file__).parent.parent.parent
BASE = (ROOT / "tests" / "cases" / "policy_errors" / "base.yaml").read_text()


@pytest.fixture(scope="module")
def shipped():
    return load(str(ROOT / "policies.yaml"))


def request(**overrides):
    """A tier-A request for policies.yaml (score 500); ``overrides`` patch 'group.field'."""
    req = {
        "order": {"amount": "12500.00", "payment_term_days": 60},
        "customer": {"credit_limit": "100000.00", "exposure": "20000.00",
                     "years_in_business": 12, "risk_class": "low", "avg_days_late": "0.4"},
    }
    for path, value in overrides.items():
        group, name = path.split("__")
        req[group][name] = value
    return req


def matched(decision) -> set[str]:
    return {e.rule_id for e in decision.trail.rules if e.matched}


def compile_text(text: str):
    return compile_policy(load_policy_text(text, "t.yaml"))


# -- money is exact ---------------------------------------------------------------------


def test_threshold_with_cents_is_exact():
    """A threshold of 10000.10 behaves exactly as written at, below and above it."""
    text = BASE.replace("when: utilisation > 1", "when: order.amount >= 10000.10")
    compiled = compile_text(text)
    base = {"order": {"amount": "1.00", "payment_term_days": 0},
            "customer": {"credit_limit": "1000000.00", "exposure": "0.00",
                         "risk_class": "low"}}

    def fires(amount: str) -> bool:
        base["order"]["amount"] = amount
        return "REF_OVER_LIMIT" in matched(evaluate(compiled, base))

    assert fires("10000.10") is True
    assert fires("10000.09") is False
    assert fires("10000.11") is True
    # a float-looking literal with more decimals than cents is still exact
    text = BASE.replace("when: utilisation > 1", "when: order.amount > 100.005")
    compiled = compile_text(text)
    assert fires("100.01") is True
    assert fires("100.00") is False


def test_ratio_just_over_a_threshold_is_not_rounded_onto_it(shipped):
    """Regression: utilisation 2.00000001 must trip `utilisation > 2` (it once rounded to
    2.000000 and the order was referred instead of declined)."""
    d = evaluate(shipped, request(order__amount="0.01", customer__credit_limit="1000000.00",
                                  customer__exposure="2000000.00"))
    assert Decimal(d.trail.derived["utilisation"]) > 2
    assert d.outcome == "decline" and "KO_HARD_CAP" in matched(d)
    # exactly 200 % is not over the cap
    d = evaluate(shipped, request(order__amount="0.01", customer__credit_limit="1000000.00",
                                  customer__exposure="1999999.99"))
    assert d.trail.derived["utilisation"] == "2"
    assert "KO_HARD_CAP" not in matched(d)


def test_ratio_just_below_a_bin_edge_stays_in_the_lower_bin(shipped):
    d = evaluate(shipped, request(order__amount="499999.99", customer__credit_limit="1000000.00",
                                  customer__exposure="0.00"))
    assert "SC_UTILISATION.1" in matched(d)  # 0.49999999 < 0.5


def test_deposit_rounds_up_to_the_cent(shipped):
    # tier C (20 %) ... use the country-risk rule: 25 % of 8499.99 = 2124.9975 -> 2125.00
    d = evaluate(shipped, request(order__amount="8499.99", customer__country_risk="high",
                                  customer__exposure="0.00"))
    assert d.deposit_amount == Decimal("2125.00")
    assert d.deposit_pct == Decimal("25.00")
    assert d.model_dump(mode="json")["deposit_amount"] == "2125.00"


def test_zero_credit_limit_means_no_credit(shipped):
    d = evaluate(shipped, request(customer__credit_limit="0.00", customer__exposure="0.00"))
    assert d.trail.derived["utilisation"] == "999"
    assert d.outcome == "decline" and "KO_HARD_CAP" in matched(d)
    assert any("if_zero_divisor" in n for n in d.trail.notes)


# -- fail closed ---------------------------------------------------------------------------


@pytest.mark.parametrize("patch, code", [
    ({"order__amount": 12500.0}, "inexact_number"),
    ({"order__amount": "-5.00"}, "below_min"),
    ({"order__amount": "12.345"}, "too_many_decimals"),
    ({"order__amount": "1e400"}, "invalid_type"),
    ({"order__amount": str(10**16)}, "out_of_range"),
    ({"order__amount": True}, "invalid_type"),
    ({"customer__risk_class": "LOW"}, "invalid_value"),
    ({"customer__blacklisted": "no"}, "invalid_type"),
    ({"customer__days_past_due": "twelve"}, "invalid_type"),
    ({"customer__days_past_due": "12.5"}, "too_many_decimals"),
    ({"customer__days_pastdue": 12}, "unknown_field"),
    ({"order__currency": "USD"}, "currency_mismatch"),
])
def test_bad_input_is_a_clear_error(shipped, patch, code):
    with pytest.raises(InputErrors) as info:
        evaluate(shipped, request(**patch))
    assert code in [e.code for e in info.value.errors]


def test_all_input_errors_are_reported_at_once(shipped):
    req = request(order__amount="abc", customer__risk_class="gold")
    del req["customer"]["credit_limit"]
    with pytest.raises(InputErrors) as info:
        evaluate(shipped, req)
    got = {(e.path, e.code) for e in info.value.errors}
    assert got == {("order.amount", "invalid_type"), ("customer.risk_class", "invalid_value"),
                   ("customer.credit_limit", "missing")}


def test_unknown_field_suggests_the_declared_one(shipped):
    with pytest.raises(InputErrors) as info:
        evaluate(shipped, request(customer__days_pastdue=1))
    assert "did you mean 'customer.days_past_due'?" in str(info.value)


def test_internal_error_is_an_evaluation_error_not_a_decision(shipped, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("simulated engine fault")

    monkeypatch.setattr(shipped, "scorecard", boom)
    with pytest.raises(EvaluationError) as info:
        evaluate(shipped, request())
    assert info.value.code == "internal"


# -- determinism and immutability -------------------------------------------------------------


def test_same_request_same_decision_and_trail(shipped):
    clock = lambda: datetime(2026, 11, 29, tzinfo=UTC)  # noqa: E731
    a = evaluate(shipped, request(), clock=clock, id_factory=lambda: "d1")
    b = evaluate(shipped, request(), clock=clock, id_factory=lambda: "d1")
    assert a == b
    assert a.model_dump_json() == b.model_dump_json()
    c = evaluate(shipped, request())
    assert c.comparable() == a.comparable() and c.decision_id != a.decision_id


def test_decision_is_immutable(shipped):
    d = evaluate(shipped, request())
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        d.outcome = "approve"  # type: ignore[misc]


# -- threads, memory, size limits ------------------------------------------------------------


def test_evaluate_from_many_threads_gives_every_right_answer(shipped):
    """8 threads × 150 requests of varying amounts; each result checked against the answer
    computed single-threaded beforehand."""
    amounts = [f"{1000 + 997 * i}.{i % 100:02d}" for i in range(150)]
    expected = {a: evaluate(shipped, request(order__amount=a)).comparable() for a in amounts}
    errors: list[str] = []

    def worker(offset: int) -> None:
        for i in range(len(amounts)):
            a = amounts[(i + offset) % len(amounts)]
            got = evaluate(shipped, request(order__amount=a)).comparable()
            if got != expected[a]:
                errors.append(a)

    threads = [threading.Thread(target=worker, args=(k * 17,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({json.dumps(v, sort_keys=True) for v in expected.values()}) > 3


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _soak(compiled, n: int) -> tuple[int, int]:
    for i in range(2000):
        evaluate(compiled, request(order__amount=f"{1000 + i}.00"))
    before = _rss_kib()
    for i in range(n):
        evaluate(compiled, request(order__amount=f"{1000 + i % 5000}.00"))
    return before, _rss_kib()


def test_memory_is_flat_over_many_evaluations(shipped):
    before, after = _soak(shipped, 20_000)
    assert after - before < 8 * 1024, f"RSS grew {after - before} KiB over 20,000 evaluations"


@pytest.mark.slow
def test_memory_is_flat_over_a_million_evaluations(shipped):
    before, after = _soak(shipped, 1_000_000)
    assert after - before < 16 * 1024, f"RSS grew {after - before} KiB over 1,000,000 evaluations"


def _many_rules_policy(n: int, all_match: bool) -> str:
    rules = []
    for i in range(n):
        threshold = 0 if all_match else i * 10
        rules.append(f"  - {{id: REF_{i}, description: rule {i}, reason_code: REF_{i}, "
                     f"when: \"order.amount > {threshold}\"}}")
    return BASE.replace(
        "referrals:\n", "referrals:\n" + "\n".join(rules) + "\n", 1)


@pytest.mark.parametrize("n, all_match", [(300, True), (5000, False)])
def test_large_policies_evaluate_every_rule(n, all_match):
    """Every rule matching at once (300 referrals, far above the engine's ~63 per ruleset)
    and a 5,000-rule policy: the matched set is exactly the expected one."""
    compiled = compile_text(_many_rules_policy(n, all_match))
    amount = Decimal("24999.99")
    d = evaluate(compiled, {"order": {"amount": str(amount), "payment_term_days": 0},
                            "customer": {"credit_limit": "100000.00", "exposure": "0.00",
                                         "risk_class": "low"}})
    got = {e.rule_id for e in d.trail.rules if e.matched and e.rule_id.startswith("REF_")
           and e.rule_id[4:].isdigit()}
    want = {f"REF_{i}" for i in range(n) if amount > (0 if all_match else i * 10)}
    assert got == want
    assert len(d.trail.rules) >= n
    assert d.outcome == "refer"


# -- regressions from adversarial testing --------------------------------------------------


def test_null_is_not_the_default(shipped):
    """An ERP sending null for "unknown" must not get the default (not insolvent)."""
    with pytest.raises(InputErrors) as info:
        evaluate(shipped, request(customer__insolvency=None))
    assert [(e.path, e.code) for e in info.value.errors] == [("customer.insolvency", "null_value")]


@pytest.mark.parametrize("raw", ["１２３", "١٢٣.٤٥", " 12500.00", "12500.00\n", "+1e3"])
def test_numbers_are_plain_ascii_digits(shipped, raw):
    with pytest.raises(InputErrors) as info:
        evaluate(shipped, request(order__amount=raw))
    assert [e.code for e in info.value.errors] == ["invalid_type"]


@pytest.mark.parametrize("ident", ["SO-1\nOutcome  APPROVE", "\ud800", "x\x00y", ""])
def test_identifiers_must_be_printable(shipped, ident):
    with pytest.raises(InputErrors) as info:
        evaluate(shipped, request(order__id=ident))
    assert [(e.path, e.code) for e in info.value.errors] == [("order.id", "invalid_type")]


def test_negative_zero_money_is_plain_zero(shipped):
    d = evaluate(shipped, request(customer__exposure="-0.00"))
    assert d.trail.inputs["customer.exposure"] == "0.00"


def test_strict_request_json():
    from engine.inputs import parse_request_json

    for text, fragment in [
        ('{"customer": {"blacklisted": true, "blacklisted": false}}', "duplicate key"),
        ('{"order": {}, "order": {}}', "duplicate key"),
        ('{"x": NaN}', "NaN is not a number"),
        ("[" * 40 + "]" * 40, "nested deeper"),
        (b'{"x": "\xff"}', "not UTF-8"),
    ]:
        with pytest.raises(InputErrors) as info:
            parse_request_json(text)
        assert fragment in str(info.value)
    assert parse_request_json('{"a": 0.1}') == {"a": Decimal("0.1")}


def test_whole_number_plus_a_fraction_is_not_truncated():
    """`n + 1/2` is a decimal (90.5), so `> 90` declines; it once truncated to 90."""
    text = BASE.replace(
        "  utilisation: {expr",
        "  half_over: {expr: customer.days_past_due + 1/2}\n  utilisation: {expr",
    ).replace("when: customer.blacklisted\n", "when: half_over > 90\n")
    compiled = compile_text(text)
    assert compiled.policy.symbols["half_over"].kind == "decimal"
    d = evaluate(compiled, {"order": {"amount": "1.00", "payment_term_days": 0},
                            "customer": {"credit_limit": "100.00", "exposure": "0.00",
                                         "risk_class": "low", "days_past_due": 90}})
    assert d.trail.derived["half_over"] == "90.5"
    assert d.outcome == "decline"


def test_literals_beyond_the_engine_range_still_decide():
    """A threshold of 10**20 does not fit the engine's int64: it becomes an exact term."""
    text = BASE.replace("when: utilisation > 1", "when: order.amount > 100000000000000000000")
    compiled = compile_text(text)
    d = evaluate(compiled, {"order": {"amount": "999999999999.99", "payment_term_days": 0},
                            "customer": {"credit_limit": "1.00", "exposure": "0.00",
                                         "risk_class": "low"}})
    assert "REF_OVER_LIMIT" not in matched(d)


def test_deposit_is_exact_beyond_28_digits():
    text = BASE.replace("deposit_pct: 50, auto_approve_up_to: 1000}",
                        "deposit_pct: 10.000000000000000000000000001, auto_approve_up_to: 1000}")
    compiled = compile_text(text)
    d = evaluate(compiled, {"order": {"amount": "100000000000000.00", "payment_term_days": 0},
                            "customer": {"credit_limit": "100000000000000.00",
                                         "exposure": "0.00", "risk_class": "high",
                                         "days_past_due": 5}})
    assert d.tier == "B"
    assert d.deposit_amount == Decimal("10000000000000.01")  # rounded up, never down
