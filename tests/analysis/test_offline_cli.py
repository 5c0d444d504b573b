"""The offline ``creditgate`` commands (validate, decide, test, backtest), run in-process
through Typer's ``CliRunner``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.cli import POLICY, REQUESTS, ROOT, run


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


def test_validate_default_policy_ok(in_root: Path) -> None:
    r = run("validate")
    assert r.exit_code == 0, r.output
    line = r.stdout.strip()
    assert "\n" not in line
    assert line.startswith("ok: trade-credit 2026.11.1 sha256:")
    assert "39 rules" in line and "score 60..500" in line


def test_validate_reports_every_error_with_position(tmp_path: Path) -> None:
    text = POLICY.read_text(encoding="utf-8")
    broken = text.replace("when: customer.days_past_due > 90", "when: customer.dayspastdue > 90")
    broken = broken.replace("base_points: 60", "base_points: 60\n  bonus: 5")
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")
    r = run("validate", path)
    assert r.exit_code == 1
    lines = broken.splitlines()
    when_line = next(i for i, t in enumerate(lines, 1) if "customer.dayspastdue" in t)
    when_col = lines[when_line - 1].index("customer.dayspastdue") + 1
    bonus_line = next(i for i, t in enumerate(lines, 1) if "bonus: 5" in t)
    err = r.stderr
    assert f"{path}:{when_line}:{when_col}: unknown_field:" in err
    assert "did you mean" in err and "customer.days_past_due" in err
    assert f"{path}:{bonus_line}:3: unknown_field: 'bonus'" in err
    assert "2 errors in the policy" in err
    assert r.stdout == ""


def test_validate_missing_file(tmp_path: Path) -> None:
    r = run("validate", tmp_path / "nope.yaml")
    assert r.exit_code == 1
    assert "file_not_found" in r.stderr


def test_decide_json(in_root: Path) -> None:
    r = run("decide", "examples/requests/approve-prime.json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["outcome"] == "approve"
    assert (d["score"], d["tier"]) == (500, "A")
    assert d["deposit_amount"] == "0.00" and d["available_credit"] == "67500.00"
    assert d["order_id"] == "SO-2026-1001" and d["customer_id"] == "CUST-0001"
    assert len(d["trail"]["rules"]) == 39


def test_decide_text(in_root: Path) -> None:
    r = run(
        "decide",
        REQUESTS / "refer-over-limit.json",
        "--policy",
        "policies.yaml",
        "--format",
        "text",
    )
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Outcome  REFER" in out
    assert "Score    450 (tier A)" in out
    assert "deposit        50.00 % = 5,000.00 EUR" in out
    assert "payment term   30 days" in out
    assert "available        -5,000.00 EUR" in out
    assert (
        "REF_OVER_LIMIT: Order takes the customer over the credit limit "
        "[rule REF_OVER_LIMIT, referral]"
    ) in out
    assert "level   credit_analyst (SLA 4 h)" in out
    assert "credit_analyst > credit_manager > finance_director > general_manager" in out
    # every rule in the trail, matched or not, with the values it read
    for rule_id in ("KO_BLACKLIST", "SC_UTILISATION.4", "DEP_COVER_EXCESS", "REF_TIER_D_LARGE"):
        assert rule_id in out
    assert "[x] SC_UTILISATION.4" in out and "utilisation=1.1 -> points +0" in out
    assert "[ ] KO_BLACKLIST" in out
    assert "Inputs" in out and "customer.credit_limit" in out and "Derived" in out


def test_decide_stdin_keeps_money_exact(in_root: Path) -> None:
    body = (REQUESTS / "approve-country-risk-capped-term.json").read_text()
    r = run("decide", "-", input=body)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["deposit_amount"] == "2125.00" and d["deposit_pct"] == "25.00"


def test_decide_json_numbers_with_fractions_are_exact(in_root: Path) -> None:
    body = {
        "order": {"amount": 8499.99, "payment_term_days": 45},
        "customer": {
            "credit_limit": 40000,
            "exposure": 25500.01,
            "years_in_business": 6,
            "risk_class": "medium",
            "avg_days_late": 25,
            "disputed_invoices": 1,
            "country_risk": "high",
        },
    }
    r = run("decide", "-", input=json.dumps(body))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["order_amount"] == "8499.99"


def test_decide_bad_input_exit_2(in_root: Path) -> None:
    body = {
        "order": {"amount": "12.345", "payment_term_days": 30, "colour": "red"},
        "customer": {
            "credit_limit": "1000.00",
            "exposure": "0",
            "years_in_business": 2,
            "risk_class": "pink",
        },
    }
    r = run("decide", "-", input=json.dumps(body))
    assert r.exit_code == 2
    err = r.stderr
    assert "no decision was made" in err
    assert "order.amount: too_many_decimals:" in err
    assert "customer.risk_class: invalid_value:" in err
    assert "order.colour: unknown_field:" in err
    assert r.stdout == ""


def test_decide_invalid_json_exit_2(in_root: Path) -> None:
    r = run("decide", "-", input='{"order": {"amount": "1.00",}}')
    assert r.exit_code == 2
    assert r.stderr.startswith("<stdin>:1:")
    assert "invalid_json" in r.stderr


def test_decide_missing_request_file_exit_2(tmp_path: Path) -> None:
    r = run("decide", tmp_path / "nope.json", "--policy", POLICY)
    assert r.exit_code == 2
    assert "cannot read the request" in r.stderr


def test_decide_policy_errors_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("policy: x\n", encoding="utf-8")
    r = run("decide", REQUESTS / "approve-prime.json", "--policy", path)
    assert r.exit_code == 1
    assert f"{path}:1:1: missing_field:" in r.stderr


def test_decide_evaluation_error_exit_3(in_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.evaluate as ev

    def boom(*args, **kwargs):
        raise ev.EvaluationError("engine", "the rule engine crashed")

    monkeypatch.setattr(ev, "evaluate", boom)
    r = run("decide", "examples/requests/approve-prime.json")
    assert r.exit_code == 3
    assert "no decision was made: engine: the rule engine crashed" in r.stderr
    assert r.stdout == ""


def test_policy_tests_pass_with_full_coverage(in_root: Path) -> None:
    r = run("test", "--require-full-coverage")
    assert r.exit_code == 0, r.output
    assert "FAIL" not in r.stdout
    assert ", 0 failed" in r.stdout
    assert "rule coverage: 39/39" in r.stdout and "(100.0 %)" in r.stdout
    assert "not matched by any case" not in r.stdout


CASE_OK = """\
  - name: prime
    request:
      order: {amount: "12500.00", payment_term_days: 60}
      customer: {credit_limit: "100000.00", exposure: "20000.00", years_in_business: 12,
                 risk_class: low}
    expect: {outcome: approve, tier: A, score: 500, deposit_amount: "0.00"}
"""
CASE_BAD = """\
  - name: wrong expectations
    request:
      order: {amount: "12500.00", payment_term_days: 60}
      customer: {credit_limit: "100000.00", exposure: "20000.00", years_in_business: 12,
                 risk_class: low}
    expect:
      outcome: refer
      deposit_amount: "0"
      reason_codes: [SC_SHORT_HISTORY]
"""


def _policy_with_tests(tmp_path: Path, cases: str) -> Path:
    policy = tmp_path / "policies.yaml"
    shutil.copy(POLICY, policy)
    (tmp_path / "policies.tests.yaml").write_text("cases:\n" + cases, encoding="utf-8")
    return policy


def test_failing_case_reports_fail_and_exits_1(tmp_path: Path) -> None:
    policy = _policy_with_tests(tmp_path, CASE_OK + CASE_BAD)
    r = run("test", policy)
    assert r.exit_code == 1
    out = r.stdout
    tests = tmp_path / "policies.tests.yaml"
    assert f"PASS  prime  ({tests}:2)" in out
    assert f"FAIL  wrong expectations  ({tests}:8)" in out
    assert f'outcome: expected "refer", got "approve"  ({tests}:14)' in out
    assert 'deposit_amount: expected "0", got "0.00"' in out  # strings compare exactly
    assert "reason_codes: expected [SC_SHORT_HISTORY], got []" in out
    assert "2 cases: 1 passed, 1 failed" in out
    assert "FAILED: 1 of 2 cases" in r.stderr


def test_incomplete_coverage_fails_only_when_required(tmp_path: Path) -> None:
    policy = _policy_with_tests(tmp_path, CASE_OK)
    r = run("test", policy)
    assert r.exit_code == 0, r.output
    assert "rule coverage: 7/39" in r.stdout
    assert "not matched by any case: KO_BLACKLIST," in r.stdout
    assert "SC_YEARS_TRADING.1" in r.stdout
    r = run("test", policy, "--require-full-coverage")
    assert r.exit_code == 1
    assert "--require-full-coverage needs 100 %" in r.stderr


def test_broken_tests_file_reports_positions(tmp_path: Path) -> None:
    policy = _policy_with_tests(tmp_path, CASE_OK.replace("deposit_amount", "deposit"))
    r = run("test", policy)
    assert r.exit_code == 1
    assert f"{tmp_path / 'policies.tests.yaml'}:7:" in r.stderr
    assert "unknown_field: 'deposit' is not a known expect key" in r.stderr


def test_missing_tests_file(tmp_path: Path) -> None:
    policy = tmp_path / "policies.yaml"
    shutil.copy(POLICY, policy)
    r = run("test", policy)
    assert r.exit_code == 1
    assert "file_not_found" in r.stderr and "policies.tests.yaml" in r.stderr


def test_case_with_invalid_request_fails(tmp_path: Path) -> None:
    case = CASE_OK.replace("risk_class: low", "risk_class: lowish")
    r = run("test", _policy_with_tests(tmp_path, case))
    assert r.exit_code == 1
    assert "FAIL  prime" in r.stdout
    assert "request: customer.risk_class: invalid_value:" in r.stdout


def test_backtest_jsonl(tmp_path: Path) -> None:
    pytest.importorskip("analysis.backtest")
    pytest.importorskip("analysis.datasets")
    request = json.loads((REQUESTS / "approve-prime.json").read_text())
    rows = [
        {"request": request, "label": "good"},
        {"request": request, "label": "bad"},
        {"request": {"order": {"amount": "1.00"}}, "label": "bad"},
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    r = run("backtest", POLICY, data, "--no-progress", "--limit", "2")
    assert r.exit_code == 0, r.output
    assert "2 rows" in r.stdout


def test_backtest_unreadable_data_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("analysis.backtest")
    r = run("backtest", POLICY, tmp_path / "missing.jsonl", "--no-progress")
    assert r.exit_code == 2
    assert "missing.jsonl" in r.stderr
