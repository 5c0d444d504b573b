"""The accounts-receivable replay (examples/receivables) on the real shared CSV.

Data: ../shared/data/ar-invoices/accounts-receivable.csv (2466 invoices; amounts taken as
EUR, days are calendar days). The hand-checked position below was worked out from the CSV
rows quoted in its docstring, not from the code under test.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from engine.inputs import validate_request
from rules.validate import load_policy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "receivables"
CSV = ROOT.parent / "shared" / "data" / "ar-invoices" / "accounts-receivable.csv"
POLICY = ROOT / "policies.yaml"

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import positions  # noqa: E402

pytestmark = pytest.mark.skipif(not CSV.exists(), reason=f"shared data missing: {CSV}")


@pytest.fixture(scope="module")
def invoices() -> list[positions.Invoice]:
    return positions.read_invoices(CSV)


@pytest.fixture(scope="module")
def replayed(invoices) -> list[tuple[positions.Invoice, positions.Position]]:
    return list(positions.positions(invoices))


def test_default_csv_is_the_shared_sample():
    assert positions.DEFAULT_CSV == CSV.resolve()


def test_reads_every_invoice_exactly_in_replay_order(invoices):
    assert len(invoices) == 2466
    assert len({inv.invoice_number for inv in invoices}) == 2466
    keys = [(inv.invoice_date, int(inv.invoice_number)) for inv in invoices]
    assert keys == sorted(keys)
    assert invoices[0].invoice_date == date(2012, 1, 3)
    assert invoices[-1].invoice_date == date(2013, 12, 2)
    amounts = {inv.invoice_number: inv.amount for inv in invoices}
    assert amounts["611365"] == Decimal("55.94")  # first data row of the CSV
    assert all(isinstance(a, Decimal) and a == a.quantize(Decimal("0.01"))
               for a in amounts.values())
    # DaysLate is consistent with the dates on every row, so paid_late is well defined
    assert all(inv.days_late == max(0, (inv.settled_date - inv.due_date).days)
               for inv in invoices)


def test_hand_checked_position(replayed):
    """Customer 3448-OWJOT, invoice 6607624258 raised 4/23/2012 (EUR 56.31, due 5/23/2012,
    settled 6/21/2012, DaysLate 29). The customer's earlier invoices (CSV rows):

    ====== ========== ======== ========= ====== ========= ========= ========
    number raised     due      amount    disp.  settled   DaysLate  at 4/23
    ====== ========== ======== ========= ====== ========= ========= ========
    1297.. 1/15/2012  2/14     48.64     Yes    2/16/2012 2         settled
    5267.. 1/30/2012  2/29     85.22     Yes    3/11/2012 11        settled
    5902.. 2/19/2012  3/20     74.94     Yes    3/28/2012 8         settled
    1070.. 3/14/2012  4/13     86.10     Yes    4/28/2012 15        open, 10 days overdue
    8164.. 4/1/2012   5/1      72.78     Yes    5/11/2012 10        open, not yet due
    ====== ========== ======== ========= ====== ========= ========= ========

    exposure 86.10 + 72.78 = 158.88; overdue 86.10, 4/23 - 4/13 = 10 days past due; two
    disputed open invoices; avg days late (2 + 11 + 8) / 3 = 7.00 (the open invoices' later
    DaysLate of 15 and 10 are not known yet); 3 of 3 settled invoices late → high;
    1/15 → 4/23 is 3 whole months (99 days: 16 + 29 + 31 + 23), years 0.25;
    invoiced so far 367.68, limit 367.68 × 90 / 99 = 334.2545… → 334.25."""
    (inv, pos), = [(i, p) for i, p in replayed if i.invoice_number == "6607624258"]
    assert inv.customer_id == "3448-OWJOT" and inv.paid_late
    assert pos.as_of == date(2012, 4, 23)
    assert pos.exposure == Decimal("158.88")
    assert pos.overdue_amount == Decimal("86.10")
    assert pos.days_past_due == 10
    assert pos.disputed_invoices == 2
    assert (pos.open_invoices, pos.settled_invoices, pos.late_invoices) == (2, 3, 3)
    assert pos.avg_days_late == Decimal("7.00")
    assert pos.first_invoice_date == date(2012, 1, 15)
    assert (pos.history_days, pos.months_known) == (99, 3)
    assert pos.years_in_business == Decimal("0.25")
    assert pos.new_customer is False
    assert pos.invoiced_so_far == Decimal("367.68")
    assert pos.credit_limit == Decimal("334.25")
    assert pos.risk_class == "high"
    assert positions.to_request(inv, pos) == {
        "order": {"id": "6607624258", "amount": "56.31", "currency": "EUR",
                  "payment_term_days": 30},
        "customer": {"id": "3448-OWJOT", "credit_limit": "334.25", "exposure": "158.88",
                     "overdue_amount": "86.10", "days_past_due": 10, "avg_days_late": "7.00",
                     "disputed_invoices": 2, "years_in_business": "0.25",
                     "risk_class": "high", "new_customer": False},
    }


def test_first_invoice_of_a_customer_is_a_new_customer_at_the_floor(replayed):
    seen: set[str] = set()
    for inv, pos in replayed:
        if inv.customer_id in seen:
            continue
        seen.add(inv.customer_id)
        assert pos.new_customer and pos.exposure == 0 and pos.months_known == 0
        assert pos.credit_limit == positions.CREDIT_LIMIT_FLOOR == Decimal("200.00")
        assert pos.risk_class == "medium" and pos.avg_days_late == 0
    assert len(seen) == 100


def test_no_look_ahead(invoices, replayed):
    """A position never uses anything dated after its as-of date: hiding every settlement
    on or after the as-of date (and all later invoices) leaves each position unchanged, and
    no invoice settled on or after the as-of date is ever counted as settled."""
    by_number = {inv.invoice_number: inv for inv in invoices}
    history: dict[str, list[positions.Invoice]] = {}
    for inv, pos in replayed:
        earlier = history.setdefault(inv.customer_id, [])
        assert all(e.invoice_date <= pos.as_of for e in earlier)
        settled = [e for e in earlier if e.settled_date < pos.as_of]
        assert pos.settled_invoices == len(settled)
        assert pos.open_invoices == len(earlier) - len(settled)
        censored = [e if e.settled_date < pos.as_of else dataclasses.replace(
            e, settled_date=date(9999, 12, 31), days_late=999) for e in earlier]
        first = earlier[0].invoice_date if earlier else inv.invoice_date
        assert positions.position_at(inv.customer_id, pos.as_of, censored, first) == pos
        earlier.append(by_number[inv.invoice_number])
    # the hand-checked case: 1070459520 was settled 4/28/2012, after the as-of date 4/23
    pos = next(p for i, p in replayed if i.invoice_number == "6607624258")
    assert by_number["1070459520"].settled_date > pos.as_of and pos.open_invoices == 2


def test_positions_do_not_depend_on_later_invoices(invoices, replayed):
    cut = date(2012, 9, 30)
    prefix = [inv for inv in invoices if inv.invoice_date <= cut]
    assert list(positions.positions(prefix)) == replayed[:len(prefix)]


def test_every_request_validates_against_the_policy():
    policy = load_policy(str(POLICY))
    n = late = 0
    for request, paid_late in positions.replay_requests(CSV):
        values, identifiers = validate_request(policy, request)
        assert identifiers == {"order.id": request["order"]["id"],
                               "customer.id": request["customer"]["id"]}
        assert values["order.amount"] == Decimal(request["order"]["amount"])
        assert values["customer.credit_limit"] > 0
        n += 1
        late += paid_late
    assert (n, late) == (2466, 877)


def test_replay_over_all_invoices():
    import replay

    from engine.evaluate import load

    result = replay.replay(load(str(POLICY)), positions.replay_requests(CSV))
    counts = result.outcome_counts()
    assert sum(counts.values()) == result.total == 2466
    assert counts["error"] == 0, result.errors
    assert set(counts) <= {"approve", "refer", "decline"}
    assert sum(result.outcome_counts(True).values()) == 877
    text = replay.report(result, policy_label="p", data_label="d")
    assert "total" in text and "2466" in text and "decisions/s" in text
