"""Run a policy's own test cases (``POLICY.tests.yaml``) and measure rule coverage.

The file format is described in README.md ("Policy tests")::

    cases:
      - name: prime customer, small order
        request: {order: {amount: "12500.00", payment_term_days: 60}, customer: {...}}
        expect: {outcome: approve, tier: A, deposit_amount: "0.00", reason_codes: []}

``request`` is the request object inline, or a path to a JSON request file (relative to the
tests file). Only the ``expect`` keys given are checked (see ``EXPECT_KEYS``):

- a quoted value (``"0.00"``) must equal the decision's JSON value exactly as text, so
  ``"5000"`` does not match ``"5000.00"``;
- an unquoted number (``340``, ``20.5``) is compared numerically;
- ``null`` means the decision has no value there (e.g. no deposit on a decline);
- lists (``reason_codes``, ``matched_rules``, ``escalation_chain``) must match exactly, in
  order.

The tests file is read with ``rules.loader`` (numbers stay exact ``Decimal``; every key keeps
its line, so a failing case reports where it is). Coverage counts every rule, including
each scorecard bin (``SC_YEARS_TRADING.1``), matched by at least one evaluated case; rules
that can never match (``when: false``) are listed as disabled and left out of the count.

Public API: ``tests_path_for``, ``load_cases``, ``run_policy_tests`` (returns a
``PolicyTestReport``), ``observed`` and ``compare`` (reused by the golden tests), ``render``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rules.errors import PolicyError, PolicyErrors
from rules.loader import Document, load_file

__all__ = [
    "EXPECT_KEYS",
    "Case",
    "CaseResult",
    "Coverage",
    "Mismatch",
    "PolicyTestReport",
    "compare",
    "load_cases",
    "observed",
    "render",
    "run_policy_tests",
    "tests_path_for",
]

#: Keys an ``expect`` mapping may hold, with what each one checks.
EXPECT_KEYS: dict[str, str] = {
    "outcome": "approve, refer or decline",
    "score": "scorecard points",
    "tier": "approval tier",
    "deposit_pct": "deposit percent, 0-100 with two decimals (null on a decline)",
    "deposit_amount": "deposit in the policy currency (null on a decline)",
    "approved_payment_term_days": "approved payment term in days (null on a decline)",
    "credit_limit": "customer's credit limit",
    "exposure_after": "exposure after this order",
    "available_credit": "credit limit minus exposure after this order",
    "reason_codes": "every reason code, in order",
    "escalation_level": "required approval level (null unless referred)",
    "escalation_chain": "levels that may decide, required level first",
    "escalation_sla_hours": "SLA of the required level, in hours",
    "matched_rules": "ids of every matched rule (incl. scorecard bins), in trail order",
}

FIXED_CLOCK = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    """One test case: ``name``, the ``request`` dict, the ``expect`` mapping, the 1-based
    ``line`` of the case in the tests file and the lines of each expect key
    (``expect_lines``)."""

    name: str
    request: Any
    expect: dict[str, Any]
    line: int
    expect_lines: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Mismatch:
    """An expected value that the decision did not produce: ``key`` (an ``EXPECT_KEYS``
    key), ``expected`` as written, ``got`` as the decision's JSON value, ``line`` of the
    key in the tests file."""

    key: str
    expected: Any
    got: Any
    line: int

    def __str__(self) -> str:
        return f"{self.key}: expected {_show(self.expected)}, got {_show(self.got)}"


@dataclass(frozen=True)
class CaseResult:
    """Result of one case: ``passed``; ``mismatches`` (empty when passed); ``error`` when no
    decision was made (input errors or an evaluation error, one line per problem);
    ``matched`` rule ids (empty when no decision)."""

    case: Case
    passed: bool
    mismatches: tuple[Mismatch, ...] = ()
    error: tuple[str, ...] = ()
    matched: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Coverage:
    """Rule coverage: ``rules`` (every rule id that can match, policy order), ``uncovered``
    (those no case matched, policy order), ``disabled`` (``when: false`` rules, excluded)."""

    rules: tuple[str, ...]
    uncovered: tuple[str, ...]
    disabled: tuple[str, ...] = ()

    @property
    def covered(self) -> int:
        """Number of rules matched by at least one case."""
        return len(self.rules) - len(self.uncovered)

    @property
    def percent(self) -> Decimal:
        """Covered share 0-100, rounded *down* to one decimal (never shows 100.0 unless
        every rule is covered)."""
        if not self.rules:
            return Decimal(100)
        pct = Decimal(self.covered * 100) / Decimal(len(self.rules))
        return pct.quantize(Decimal("0.1"), rounding=ROUND_FLOOR)

    @property
    def full(self) -> bool:
        """True when every rule that can match was matched (100 %)."""
        return not self.uncovered


@dataclass(frozen=True)
class PolicyTestReport:
    """Everything ``creditgate test`` prints: the files, one ``CaseResult`` per case in file
    order and the ``Coverage``. ``passed`` is true when every case passed."""

    policy_file: str
    tests_file: str
    results: tuple[CaseResult, ...]
    coverage: Coverage

    @property
    def failed(self) -> tuple[CaseResult, ...]:
        """The results of the cases that failed, in file order."""
        return tuple(r for r in self.results if not r.passed)

    @property
    def passed(self) -> bool:
        """True when every case passed (coverage is not considered)."""
        return not self.failed


def tests_path_for(policy_path: str | Path) -> Path:
    """``policies.yaml`` → ``policies.tests.yaml`` (same directory; ``.yml`` kept)."""
    p = Path(policy_path)
    suffix = p.suffix if p.suffix in (".yaml", ".yml") else ".yaml"
    stem = p.stem if p.suffix in (".yaml", ".yml") else p.name
    return p.with_name(f"{stem}.tests{suffix}")


def load_cases(tests_path: str | Path) -> list[Case]:
    """Read and check a tests file.

    Returns the cases in file order. Raises ``PolicyErrors`` (``file:line:col: code:
    message``) for an unreadable file, bad YAML, a missing ``cases`` list, a case without
    ``request``/``expect``, an unknown ``expect`` key or an unreadable request file; every
    problem is reported, not just the first."""
    doc = load_file(tests_path)
    errors: list[PolicyError] = []
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise PolicyErrors(
            [doc.error((), "missing_field", "a tests file is a mapping with a 'cases' list")]
        )
    for key in data:
        if key != "cases":
            errors.append(
                doc.error(
                    (key,), "unknown_field", f"{key!r} is not a known key here; allowed: cases"
                )
            )
    cases = []
    for i, raw in enumerate(data["cases"]):
        case = _case(doc, i, raw, errors)
        if case is not None:
            cases.append(case)
    if not data["cases"]:
        errors.append(doc.error(("cases",), "invalid_value", "'cases' is empty"))
    if errors:
        raise PolicyErrors(errors)
    return cases


def _case(doc: Document, i: int, raw: Any, errors: list[PolicyError]) -> Case | None:
    where = ("cases", i)
    if not isinstance(raw, dict):
        errors.append(
            doc.error(where, "invalid_value", "a case is a mapping with name, request and expect")
        )
        return None
    ok = True
    for key in raw:
        if key not in ("name", "request", "expect"):
            errors.append(
                doc.error(
                    where + (key,),
                    "unknown_field",
                    f"{key!r} is not a known key of a case; allowed: name, request, expect",
                )
            )
            ok = False
    for key in ("request", "expect"):
        if key not in raw:
            errors.append(doc.error(where, "missing_field", f"case {i + 1}: {key!r} is missing"))
            ok = False
    expect = raw.get("expect")
    if "expect" in raw and not isinstance(expect, dict):
        errors.append(
            doc.error(
                where + ("expect",),
                "invalid_value",
                "'expect' is a mapping such as {outcome: approve}",
            )
        )
        ok = False
    elif isinstance(expect, dict):
        for key in expect:
            if key not in EXPECT_KEYS:
                errors.append(
                    doc.error(
                        where + ("expect", key),
                        "unknown_field",
                        f"{key!r} is not a known expect key; allowed: " + ", ".join(EXPECT_KEYS),
                    )
                )
                ok = False
    request = raw.get("request")
    if isinstance(request, str):
        request = _request_file(doc, where + ("request",), request, errors)
        ok = ok and request is not None
    if not ok:
        return None
    line = doc.at(where).line
    name = raw.get("name") or f"case {i + 1}"
    lines = {k: doc.at(where + ("expect", k)).line for k in expect}
    return Case(str(name), request, dict(expect), line, lines)


def _request_file(doc: Document, where: tuple, rel: str, errors: list[PolicyError]) -> Any:
    path = Path(doc.file).parent / rel
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except OSError as exc:
        errors.append(
            doc.error(where, "file_not_found", f"request file {str(path)!r}: {exc.strerror or exc}")
        )
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        errors.append(
            doc.error(where, "invalid_value", f"request file {str(path)!r} is not JSON: {exc}")
        )
    return None


def observed(decision: Any) -> dict[str, Any]:
    """The checkable values of a ``Decision``, keyed like ``EXPECT_KEYS``, as JSON values
    (money and percentages as exact strings, terms and score as ints, missing as None)."""
    d = decision.model_dump(mode="json")
    esc = d["escalation"]
    return {
        "outcome": d["outcome"],
        "score": d["score"],
        "tier": d["tier"],
        "deposit_pct": d["deposit_pct"],
        "deposit_amount": d["deposit_amount"],
        "approved_payment_term_days": d["approved_payment_term_days"],
        "credit_limit": d["credit_limit"],
        "exposure_after": d["exposure_after"],
        "available_credit": d["available_credit"],
        "reason_codes": [r["code"] for r in d["reasons"]],
        "escalation_level": esc["level"] if esc else None,
        "escalation_chain": esc["chain"] if esc else None,
        "escalation_sla_hours": esc["sla_hours"] if esc else None,
        "matched_rules": [e["rule_id"] for e in d["trail"]["rules"] if e["matched"]],
    }


def _same(expected: Any, got: Any) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(_same(e, g) for e, g in zip(expected, got, strict=True))
        )
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, str):
        return isinstance(got, str) and expected == got
    if isinstance(expected, (int, Decimal)):
        try:
            return Decimal(expected) == Decimal(str(got))
        except InvalidOperation:
            return False
    return expected == got


def compare(
    expect: dict[str, Any], got: dict[str, Any], lines: dict[str, int] | None = None
) -> list[Mismatch]:
    """Mismatches between ``expect`` (a case's expect mapping) and ``got`` (``observed``),
    in the order of ``expect``; empty when every given key matches."""
    lines = lines or {}
    return [
        Mismatch(k, v, got.get(k), lines.get(k, 0))
        for k, v in expect.items()
        if not _same(v, got.get(k))
    ]


def run_policy_tests(
    compiled: Any, tests_path: str | Path, *, evaluate: Callable[..., Any] | None = None
) -> PolicyTestReport:
    """Run every case of ``tests_path`` against ``compiled`` (a ``CompiledPolicy``).

    Each case is evaluated with a fixed clock and decision id. A case whose request is
    rejected (``InputErrors``) or cannot be decided (``EvaluationError``) fails with those
    errors. Raises ``PolicyErrors`` if the tests file itself is broken (see
    ``load_cases``). ``evaluate`` defaults to ``engine.evaluate.evaluate``."""
    from engine.evaluate import EvaluationError, InputErrors
    from engine.evaluate import evaluate as default_evaluate

    run = evaluate or default_evaluate
    cases = load_cases(tests_path)
    results = []
    for case in cases:
        try:
            decision = run(
                compiled, case.request, clock=lambda: FIXED_CLOCK, id_factory=lambda: "policy-test"
            )
        except InputErrors as exc:
            results.append(
                CaseResult(
                    case,
                    False,
                    error=tuple(
                        f"request: {e.path or '(request)'}: {e.code}: {e.message}"
                        for e in exc.errors
                    ),
                )
            )
            continue
        except EvaluationError as exc:
            results.append(
                CaseResult(case, False, error=(f"no decision was made: {exc.code}: {exc.message}",))
            )
            continue
        got = observed(decision)
        mismatches = tuple(compare(case.expect, got, case.expect_lines))
        results.append(
            CaseResult(case, not mismatches, mismatches, matched=frozenset(got["matched_rules"]))
        )
    policy = compiled.policy
    disabled = tuple(r.id for r in policy.rules if r.id in compiled.never)
    ids = tuple(r.id for r in policy.rules if r.id not in compiled.never)
    matched = set().union(*(r.matched for r in results)) if results else set()
    coverage = Coverage(ids, tuple(i for i in ids if i not in matched), disabled)
    return PolicyTestReport(str(policy.file), str(tests_path), tuple(results), coverage)


def _show(v: Any) -> str:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, list):  # codes and rule ids: shown bare, as written in the tests file
        return "[" + ", ".join(x if isinstance(x, str) else _show(x) for x in v) + "]"
    if v is None:
        return "null"
    return json.dumps(v) if isinstance(v, str) else str(v)


def render(report: PolicyTestReport) -> str:
    """Plain-text report: one ``PASS``/``FAIL`` line per case (``file:line``), the differing
    fields (expected vs got) or errors under each failure, a summary line, then rule
    coverage and the rules no case matched."""
    out = []
    tf = report.tests_file
    for r in report.results:
        c = r.case
        out.append(f"{'PASS' if r.passed else 'FAIL'}  {c.name}  ({tf}:{c.line})")
        for e in r.error:
            out.append(f"      {e}")
        for m in r.mismatches:
            where = f"  ({tf}:{m.line})" if m.line else ""
            out.append(f"      {m}{where}")
    n, f = len(report.results), len(report.failed)
    out.append("")
    out.append(f"{n} case{'s' if n != 1 else ''}: {n - f} passed, {f} failed")
    cov = report.coverage
    out.append(
        f"rule coverage: {cov.covered}/{len(cov.rules)} rules matched by at least one "
        f"case ({cov.percent} %)"
    )
    if cov.uncovered:
        out.append("not matched by any case: " + ", ".join(cov.uncovered))
    if cov.disabled:
        out.append("disabled (when: false), not counted: " + ", ".join(cov.disabled))
    return "\n".join(out)
