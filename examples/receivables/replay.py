"""Replay the accounts-receivable sample through a credit policy and back-test it.

Usage (from the repository root)::

    .venv/bin/python examples/receivables/replay.py [--policy policies.yaml] [--csv PATH]

Every invoice of the CSV (default ``../shared/data/ar-invoices/accounts-receivable.csv``,
relative to the repository root) becomes an order request built from the customer's position
at the invoice date (``positions.py``; amounts treated as EUR), decided in date order with
``engine.evaluate``. The report compares the decisions with what really happened: whether
each invoice was later paid after its due date (``DaysLate > 0``).

Printed: outcome mix (counts and %), decisions among invoices later paid late vs paid on
time (approval rate per realised outcome), the share of approved invoices later paid late,
how many approvals carried conditions (deposit, shorter term; tier D approves only cash in
advance), the tier mix, the most frequent reason codes (a decision counts once per code) and
the decision rate (``evaluate`` calls per second of wall time, one thread, including the
engine's rule registration on the first call).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import positions

from engine.evaluate import EvaluationError, InputErrors, evaluate, load

OUTCOMES = ("approve", "refer", "decline", "error")
DEFAULT_POLICY = positions.REPO_ROOT / "policies.yaml"


@dataclass
class ReplayResult:
    """Counts from one replay. ``rows`` holds ``(outcome, paid_late)`` per invoice in replay
    order (outcome ``error`` when the request was rejected or no decision could be made);
    ``seconds`` is the wall time spent inside ``evaluate`` only."""

    rows: list[tuple[str, bool]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    tiers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    #: approvals with conditions: ``deposit``, ``shorter_term``, ``cash_in_advance`` (term 0)
    conditions: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.rows)

    def outcome_counts(self, paid_late: bool | None = None) -> Counter[str]:
        """Decisions per outcome, for all invoices or those with the given realised outcome."""
        return Counter(o for o, late in self.rows if paid_late is None or late == paid_late)


def replay(compiled: Any, items: Iterable[tuple[dict[str, Any], bool]]) -> ReplayResult:
    """Decide every ``(request, paid_late)`` of ``items`` in order under ``compiled``.

    A request the policy rejects (``InputErrors``) or cannot decide (``EvaluationError``)
    counts as outcome ``error`` with its error code; the replay goes on (fail closed: an
    error is never an approval)."""
    result = ReplayResult()
    for request, paid_late in items:
        start = time.perf_counter()
        try:
            decision = evaluate(compiled, request)
        except InputErrors as exc:
            result.seconds += time.perf_counter() - start
            result.rows.append(("error", paid_late))
            result.errors.update(f"input:{e.code}" for e in exc.errors)
            continue
        except EvaluationError as exc:
            result.seconds += time.perf_counter() - start
            result.rows.append(("error", paid_late))
            result.errors[f"evaluation:{exc.code}"] += 1
            continue
        result.seconds += time.perf_counter() - start
        result.rows.append((decision.outcome, paid_late))
        result.tiers[decision.tier] += 1
        result.reasons.update({r.code for r in decision.reasons})
        if decision.outcome == "approve":
            if decision.deposit_amount:
                result.conditions["deposit"] += 1
            term = decision.approved_payment_term_days
            if term is not None and term < (decision.requested_payment_term_days or 0):
                result.conditions["shorter_term"] += 1
            if term == 0:
                result.conditions["cash_in_advance"] += 1
    return result


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "    - "


def report(result: ReplayResult, *, policy_label: str, data_label: str, top: int = 10) -> str:
    """The replay as a plain-text report (fixed-width tables)."""
    n = result.total
    late, on_time = result.outcome_counts(True), result.outcome_counts(False)
    n_late, n_on_time = sum(late.values()), sum(on_time.values())
    everything = result.outcome_counts()
    shown = [o for o in OUTCOMES if o != "error" or everything[o]]
    out = [
        "Creditgate receivables replay",
        f"policy : {policy_label}",
        f"data   : {data_label}",
        f"money  : {positions.CURRENCY} (the data has no currency; amounts taken as EUR)",
        "",
        "Outcome mix",
        f"  {'outcome':<10}{'invoices':>10}{'share':>10}{'paid late':>12}{'on time':>10}",
    ]
    for o in shown:
        out.append(f"  {o:<10}{everything[o]:>10}{_pct(everything[o], n):>10}"
                   f"{late[o]:>12}{on_time[o]:>10}")
    out.append(f"  {'total':<10}{n:>10}{_pct(n, n):>10}{n_late:>12}{n_on_time:>10}")

    out += ["", "Decisions by realised outcome (row %)",
            f"  {'realised':<14}{'invoices':>10}" + "".join(f"{o:>10}" for o in shown)]
    for label, counts, total in (("paid late", late, n_late), ("paid on time", on_time, n_on_time),
                                 ("all", everything, n)):
        out.append(f"  {label:<14}{total:>10}"
                   + "".join(f"{_pct(counts[o], total):>10}" for o in shown))

    approved = everything["approve"]
    out += [
        "",
        f"  Paid-late invoices approved: {late['approve']} of {n_late} "
        f"({_pct(late['approve'], n_late).strip()})",
        f"  Approved invoices later paid late: {late['approve']} of {approved} "
        f"({_pct(late['approve'], approved).strip()}; base rate {_pct(n_late, n).strip()})",
        f"  Approvals with conditions: deposit {result.conditions['deposit']}, shorter term "
        f"{result.conditions['shorter_term']} (cash in advance "
        f"{result.conditions['cash_in_advance']}) of {approved}",
        "",
        "Tier mix: " + ", ".join(f"{t} {c} ({_pct(c, n).strip()})"
                                 for t, c in sorted(result.tiers.items())),
        "",
        f"Top reason codes (decisions carrying the code, of {n})",
        f"  {'code':<26}{'decisions':>10}{'share':>10}",
    ]
    for code, count in result.reasons.most_common(top):
        out.append(f"  {code:<26}{count:>10}{_pct(count, n):>10}")
    if result.errors:
        out += ["", "Errors (no decision)"]
        out += [f"  {code:<26}{count:>10}" for code, count in result.errors.most_common()]
    rate = n / result.seconds if result.seconds else float("inf")
    out += ["", f"Speed: {n} decisions in {result.seconds:.2f} s of evaluate() = "
                f"{rate:,.0f} decisions/s (one thread; first call includes rule registration)"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=str(DEFAULT_POLICY), help="policy YAML file")
    parser.add_argument("--csv", default=str(positions.DEFAULT_CSV),
                        help="accounts-receivable CSV (default: the shared sample)")
    parser.add_argument("--top", type=int, default=10, help="reason codes to list")
    args = parser.parse_args(argv)

    compiled = load(args.policy)
    invoices = positions.read_invoices(args.csv)
    customers = len({inv.customer_id for inv in invoices})
    first, last = invoices[0].invoice_date, invoices[-1].invoice_date
    items = [(positions.to_request(inv, pos), inv.paid_late)
             for inv, pos in positions.positions(invoices)]
    result = replay(compiled, items)
    policy = compiled.policy
    print(report(
        result,
        policy_label=f"{policy.id} {policy.version} ({args.policy})",
        data_label=(f"{Path(args.csv).name}: {len(invoices)} invoices, {customers} customers, "
                    f"{first} .. {last}"),
        top=args.top,
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
