"""Every policy error code is reported with its exact file position.

Cases live in tests/cases/policy_errors/cases.yaml: each edits the valid base policy
(base.yaml) and lists the exact ``LINE:COLUMN: code`` errors expected.
"""

from pathlib import Path

import pytest
import yaml

from rules.errors import PolicyErrors
from rules.validate import load_policy, load_policy_text

# Also run under Python 3.12 by scripts/test (the Docker image's Python).
pytestmark = pytest.mark.smoke

CASES_DIR = Path(__file__).parent.parent / "cases" / "policy_errors"
BASE = (CASES_DIR / "base.yaml").read_text()
CASES = yaml.safe_load((CASES_DIR / "cases.yaml").read_text())


def test_base_policy_is_valid():
    policy = load_policy(CASES_DIR / "base.yaml")
    assert (policy.min_score, policy.max_score) == (0, 100)
    assert [t.tier for t in policy.tiers] == ["A", "B"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_policy_error_position(case):
    assert case["old"] in BASE, "the case must edit text that exists in base.yaml"
    text = case.get("whole") or BASE.replace(case["old"], case["new"], 1)
    text = text.replace(" LONG", " and utilisation > 1" * 120)
    text = text.replace("when: NESTED", "when: " + "not " * 45 + "customer.blacklisted")
    with pytest.raises(PolicyErrors) as info:
        load_policy_text(text, "p.yaml")
    got = [f"{e.line}:{e.column}: {e.code}" for e in info.value.errors]
    assert got == case["errors"]
    for e in info.value.errors:
        assert str(e).startswith(f"p.yaml:{e.line}:{e.column}: {e.code}: ")
        assert e.message


def test_did_you_mean_names_the_closest_field():
    text = BASE.replace("when: utilisation > 1", "when: utilisaton > 1")
    with pytest.raises(PolicyErrors) as info:
        load_policy_text(text, "p.yaml")
    assert "did you mean 'utilisation'?" in str(info.value)


def test_missing_file_is_a_positioned_error(tmp_path):
    with pytest.raises(PolicyErrors) as info:
        load_policy(tmp_path / "nope.yaml")
    assert [e.code for e in info.value.errors] == ["file_not_found"]


def test_shipped_policy_is_valid():
    policy = load_policy(Path(__file__).parent.parent.parent / "policies.yaml")
    assert policy.currency == "EUR" and policy.minor_units == 2
    assert (policy.min_score, policy.max_score) == (60, 500)


def test_every_documented_error_code_has_a_case():
    docs = (Path(__file__).parent.parent.parent / "README.md").read_text()
    table = docs.split("### Policy errors", 1)[1].split("###", 1)[0]
    import re

    documented = set(re.findall(r"`([a-z_]+)`", table)) - {"deposit_pct", "deposit_amount"}
    covered = {err.split(": ")[1] for c in CASES for err in c["errors"]}
    file_level = {"file_not_found", "file_unreadable", "not_utf8", "too_large"}
    assert documented - covered - file_level == set()


def test_file_level_errors(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("policy: caf\xe9".encode("latin-1"))
    with pytest.raises(PolicyErrors) as info:
        load_policy(bad)
    assert [e.code for e in info.value.errors] == ["not_utf8"]
    with pytest.raises(PolicyErrors) as info:
        load_policy(tmp_path)  # a directory cannot be read as a file
    assert [e.code for e in info.value.errors] == ["file_unreadable"]
    import rules.loader as loader

    big = tmp_path / "big.yaml"
    big.write_text("# x\n" * 10)
    old = loader.MAX_POLICY_BYTES
    loader.MAX_POLICY_BYTES = 20
    try:
        with pytest.raises(PolicyErrors) as info:
            load_policy(big)
    finally:
        loader.MAX_POLICY_BYTES = old
    assert [e.code for e in info.value.errors] == ["too_large"]
