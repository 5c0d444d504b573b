"""Back-test of examples/german-credit/policy.yaml on the real UCI German Credit data.

Data: ../shared/data/german-credit/german.data (1000 rows, 700 good / 300 bad; codes in
german.doc). The expected request for row 1 below was written by hand from the raw line

    A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1

and german.doc's code table, not produced by the code under test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from analysis.backtest import BacktestResult, render, run_backtest
from analysis.datasets import DatasetError, read_dataset
from engine.evaluate import load
from engine.inputs import InputErrors, validate_request

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "german-credit"
POLICY = EXAMPLE / "policy.yaml"
DATA = ROOT.parent / "shared" / "data" / "german-credit" / "german.data"

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"shared data missing: {DATA}")

ROW_1 = {
    "order": {"id": "german-1", "currency": "DEM", "amount": "1169",
              "payment_term_days": 180},                  # 6 months x 30
    "customer": {
        "checking_account": "below_0",                    # A11  ... < 0 DM
        "credit_history": "critical_other_credits",       # A34
        "purpose": "radio_tv",                            # A43
        "savings": "unknown_or_none",                     # A65
        "employment_years": "7_or_more",                  # A75
        "installment_rate_pct": 4,
        # A93 (personal status and sex) is deliberately not mapped
        "guarantor": "none",                              # A101
        "residence_since": 4,
        "property": "real_estate",                        # A121
        "age": 67,
        "other_installment_plans": "none",                # A143
        "housing": "own",                                 # A152
        "existing_credits": 2,
        "job": "skilled",                                 # A173
        "people_liable": 1,
        "telephone": True,                                # A192 registered in own name
        "foreign_worker": True,                           # A201 yes
    },
}


@pytest.fixture(scope="module")
def compiled():
    return load(str(POLICY))


@pytest.fixture(scope="module")
def rows() -> list[tuple[dict, str]]:
    return list(read_dataset(DATA))


@pytest.fixture(scope="module")
def result(compiled, rows) -> BacktestResult:
    return run_backtest(compiled, rows, progress=False)


# -- mapping ---------------------------------------------------------------------------------


def test_row_1_maps_to_the_documented_request(rows):
    request, label = rows[0]
    assert request == ROW_1
    assert label == "good"


def test_format_is_detected_from_the_file_name():
    with pytest.raises(ValueError, match="cannot tell the data format"):
        read_dataset("applications.csv")
    with pytest.raises(ValueError, match="unknown data format"):
        read_dataset(DATA, "csv")


def test_reads_all_rows_with_the_known_class_split(rows):
    assert len(rows) == 1000
    assert sum(label == "good" for _, label in rows) == 700
    assert sum(label == "bad" for _, label in rows) == 300
    assert [r["order"]["id"] for r, _ in rows[:3]] == ["german-1", "german-2", "german-3"]


def test_every_row_fits_the_policy_inputs(compiled, rows):
    problems = []
    for request, _ in rows:
        try:
            validate_request(compiled.policy, request)
        except InputErrors as exc:
            problems.append(f"{request['order']['id']}: {exc}")
    assert problems == []


def _corrupt(tmp_path: Path, line_no: int, old: str, new: str) -> Path:
    lines = DATA.read_text(encoding="utf-8").splitlines(keepends=True)[:5]
    assert old in lines[line_no - 1]
    lines[line_no - 1] = lines[line_no - 1].replace(old, new, 1)
    path = tmp_path / "german.data"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_unknown_code_names_file_line_and_column(tmp_path):
    # line 3 is "A14 12 A34 A46 2096 ...": purpose A46 becomes the unknown A4X
    path = _corrupt(tmp_path, 3, " A46 ", " A4X ")
    it = read_dataset(path)
    assert [r["order"]["id"] for r, _ in (next(it), next(it))] == ["german-1", "german-2"]
    with pytest.raises(DatasetError) as err:
        next(it)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3:4: column 4 (Purpose): unknown code 'A4X'")
    assert "A40" in msg and "A410" in msg
    assert (err.value.line, err.value.column) == (3, 4)


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = _corrupt(tmp_path, 2, " A201 2", " 2")  # drops the foreign-worker column
    with pytest.raises(DatasetError, match=r"german\.data:2: expected 21 space-separated "
                                           r"columns \(20 attributes and the class\), got 20"):
        list(read_dataset(path))


def test_bad_number_and_bad_class_are_reported(tmp_path):
    path = _corrupt(tmp_path, 1, "A11 6 ", "A11 6.5 ")
    with pytest.raises(DatasetError, match=r":1:2: column 2 \(Duration in month\): expected "
                                           r"a whole number, got '6.5'"):
        list(read_dataset(path))
    path = _corrupt(tmp_path, 1, " A201 1", " A201 3")
    with pytest.raises(DatasetError, match=r":1:21: column 21 \(class\): expected 1 \(good\) "
                                           r"or 2 \(bad\), got '3'"):
        list(read_dataset(path))


def test_jsonl_rows_and_errors(tmp_path):
    path = tmp_path / "apps.jsonl"
    good = {"request": {"order": {"amount": 1169.50}}, "label": "good"}
    path.write_text(json.dumps(good) + "\n\n" + '{"request": {}, "label": "maybe"}\n',
                    encoding="utf-8")
    it = read_dataset(path)
    request, label = next(it)
    assert label == "good"
    assert str(request["order"]["amount"]) == "1169.5"  # exact Decimal, not a float
    with pytest.raises(DatasetError, match=r"apps\.jsonl:3: \"label\" must be \"good\" or "
                                           r"\"bad\", got 'maybe'"):
        next(it)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"request": {}, "label": "good"\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"broken\.jsonl:1:\d+: invalid JSON"):
        list(read_dataset(broken))


# -- back-test ---------------------------------------------------------------------------------


def test_counts_cover_every_row(result):
    p = result.policy_strategy
    assert result.n == p.n == 1000
    assert (result.goods, result.bads) == (700, 300)
    assert sum(p.n_of(o) for o in ("approve", "refer", "decline", "error")) == 1000
    assert sum(p.n_of(o, "good") for o in ("approve", "refer", "decline", "error")) == 700
    assert result.error_count == 0 and result.errors == []


def test_baseline_costs(result):
    assert result.oracle.cost == 0
    assert result.approve_all.cost == 300 * 5 == 1500
    assert result.decline_all.cost == 700
    assert result.approve_all.bad_rate_approved == pytest.approx(30.0)
    assert result.oracle.bad_rate_approved == 0.0
    assert result.oracle.rate("approve") == pytest.approx(70.0)


def test_policy_beats_approve_all_and_never_lending(result):
    p = result.policy_strategy
    assert p.cost < result.approve_all.cost
    assert p.cost < result.decline_all.cost
    # convention: cost = 5 x bad approved + 1 x good referred or declined
    assert p.cost == (5 * p.n_of("approve", "bad")
                      + p.n_of("refer", "good") + p.n_of("decline", "good"))
    assert p.cost_refers_granted == (5 * (p.n_of("approve", "bad") + p.n_of("refer", "bad"))
                                     + p.n_of("decline", "good"))
    assert p.bad_rate_approved < 16.7  # the cost matrix's break-even bad rate


def test_render_shows_policy_and_baselines_in_one_table(result):
    text = render(result)
    table = text.split("Policy against baselines")[1].split("\n\n")[0]
    for name in ("policy", "approve all", "decline all", "oracle (actual class)"):
        assert f"\n{name} " in table
    assert "1500" in table and "decisions/s" in text
    assert "on 1000 rows: 700 good, 300 bad" in text


def test_row_errors_are_counted_and_listed_not_raised(compiled, rows):
    broken = []
    for i, (request, label) in enumerate(rows[:15]):
        request = json.loads(json.dumps(request))
        request["customer"]["age"] = 17 if i % 2 else "old"
        broken.append((request, label))
    mixed = [*broken, *rows[15:20]]
    result = run_backtest(compiled, mixed, progress=False)
    assert result.n == 20
    assert result.error_count == 15
    assert len(result.errors) == 10
    assert result.errors[0].row == 1 and result.errors[0].order_id == "german-1"
    assert result.errors[0].kind == "input"
    assert "customer.age" in str(result.errors[0])
    assert result.policy_strategy.n_of("error") == 15
    text = render(result)
    assert "Errors (first 10 of 15)" in text and "error %" in text


def test_unknown_label_is_rejected(compiled, rows):
    with pytest.raises(ValueError, match="label must be 'good' or 'bad'"):
        run_backtest(compiled, [(rows[0][0], "1")], progress=False)


def test_policy_points_are_the_documented_woe_derivation(compiled, rows):
    sys.path.insert(0, str(EXAMPLE))
    try:
        import derive_points
    finally:
        sys.path.remove(str(EXAMPLE))
    base, table = derive_points.woe_table(rows)
    policy = compiled.policy
    assert policy.base_points == base == 524
    assert [f.id for f in policy.factors] == [fid for fid, *_ in table]
    for factor, (fid, fieldname, _iv, stats) in zip(policy.factors, table, strict=True):
        assert factor.field == fieldname
        points = [policy.rule(b).effect["points"] for b in factor.bin_ids]
        assert points == [s.points for s in stats], fid
