"""Customer credit positions replayed from the accounts-receivable sample, as policy requests.

Source data: ``../shared/data/ar-invoices/accounts-receivable.csv`` (IBM Watson Analytics
"Accounts Receivable" sample, 2466 invoices, 100 customers, invoice dates 2012-01-03 ..
2013-12-02). Every invoice has a 30-day term and has been settled; ``DaysLate`` equals
``max(0, SettledDate - DueDate)`` on every row.

Units: money is ``Decimal`` in **EUR** (the data carries no currency; we treat the amounts as
EUR for the demo because ``policies.yaml`` decides in EUR), 2 decimals. Durations are whole
calendar days unless a name says months or years.

Replay
------
Invoices are replayed in date order (``InvoiceDate``, then ``invoiceNumber`` compared as a
number for invoices of the same day). When an invoice is raised, the customer's position is
computed from the customer's *earlier* invoices (earlier in that order) only, as known at the
as-of date ``D`` = the new invoice's ``InvoiceDate``:

- The ledger is read as of the start of day ``D``: an earlier invoice counts as **settled**
  only if its ``SettledDate`` is before ``D`` (``SettledDate < D``); otherwise it is **open**
  (an invoice is open until its settlement date). Invoices raised earlier on day ``D`` are
  already open. Nothing settled on or after ``D`` is ever seen as settled (no look-ahead).
- ``exposure``: sum of the open invoices' amounts (EUR).
- ``overdue_amount``: sum of the open invoices with ``D > DueDate`` (EUR).
- ``days_past_due``: ``D - DueDate`` (days) of the oldest overdue open invoice, 0 if none.
- ``avg_days_late``: mean ``DaysLate`` (days) over the invoices settled before ``D``,
  rounded half-even to 2 decimals; 0 if none.
- ``disputed_invoices``: open invoices flagged ``Disputed = Yes``. The data has no dispute
  date, so a dispute is taken as known from the invoice date while the invoice is open. This
  is the one field where a little look-ahead is possible (a dispute may in reality be raised
  after ``D``); everything else is dated.
- ``months_known`` / ``years_in_business``: whole calendar months from the customer's first
  invoice to ``D`` (0 on the first invoice); ``years_in_business = months_known / 12``
  rounded *down* to 2 decimals. **Proxy**: the data has no founding date, so "years in
  business" is "years trading with us". The sample spans under two years, so this proxy is
  always below 2 (the lowest bin of the policy's ``SC_YEARS_TRADING`` factor).
- ``new_customer``: no invoice settled before ``D`` yet (matches the policy's "no paid invoice
  with us yet").

Derived rules (the data has neither a credit limit nor a rating, so we define them here;
they are demo choices, not calibrated, and are stated so a reader can disagree with them):

- ``credit_limit`` = max(EUR 200.00, 3 × average invoiced per 30-day month), with the
  average taken over the customer's earlier invoices and the days from the first invoice to
  ``D`` (at least 30): ``invoiced_so_far × 90 / max(history_days, 30)``, rounded half-even
  to the cent. Rule of thumb: a trade-credit limit is commonly sized as a few months of the
  customer's purchases (enough for invoices outstanding over the payment term plus slack
  for slow payment); with net-30 terms three months leaves room for two months of slippage.
  The floor (EUR 200 ≈ 3.3 × the median invoice of EUR 60.57 in this file, read off the
  data) gives new customers and customers with little history room for a few orders.
- ``risk_class`` from the share of the customer's invoices settled before ``D`` that were
  paid late (``DaysLate > 0``): ``medium`` with fewer than 3 settled invoices (not enough
  evidence, including new customers); otherwise ``low`` below 20 %, ``medium`` from 20 % to
  below 50 %, ``high`` from 50 %. Our thresholds, chosen to split the file's customers into
  roughly low 45 / medium 20 / high 35 on their full history. It uses *how often* a customer
  is late; the policy's ``SC_PAYMENT_BEHAVIOUR`` factor already scores *how late*
  (``avg_days_late``), so the two do not count the same thing twice.

Not derivable from the data and left to the policy defaults: ``blacklisted``,
``in_litigation``, ``insolvency`` (false) and ``country_risk`` (low; ``countryCode`` values
such as 391 or 406 are not ISO codes we could grade).

Reuse: :func:`replay_requests` yields ``(request, paid_late)`` in date order and imports
nothing from the engine, so the same stream can be posted over HTTP.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

__all__ = [
    "CREDIT_LIMIT_FLOOR",
    "CURRENCY",
    "DEFAULT_CSV",
    "Invoice",
    "LIMIT_MONTHS",
    "Position",
    "position_at",
    "positions",
    "read_invoices",
    "replay_requests",
    "risk_class",
    "to_request",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The shared sample: ``../shared/data/ar-invoices/accounts-receivable.csv`` from the repo root.
DEFAULT_CSV = (REPO_ROOT / ".." / "shared" / "data" / "ar-invoices" /
               "accounts-receivable.csv").resolve()

#: Amounts are treated as EUR (the data has no currency).
CURRENCY = "EUR"
CENT = Decimal("0.01")
#: Minimum credit limit in EUR (about 3.3 median invoices of this file).
CREDIT_LIMIT_FLOOR = Decimal("200.00")
#: Credit limit = this many 30-day months of average invoiced amount.
LIMIT_MONTHS = 3
#: Length of the month used for the limit's monthly average, in days.
MONTH_DAYS = 30
#: risk_class needs at least this many settled invoices; below it the class is "medium".
RISK_MIN_SETTLED = 3
#: Late share (paid-late settled invoices / settled invoices) from which the class is medium.
RISK_MEDIUM_FROM = Decimal("0.20")
#: Late share from which the class is high.
RISK_HIGH_FROM = Decimal("0.50")


@dataclass(frozen=True)
class Invoice:
    """One CSV row, parsed exactly: ``amount`` in EUR (``Decimal``), dates as ``date``,
    ``days_late`` in days (``DaysLate``: days settled after the due date, 0 if on time)."""

    country_code: str
    customer_id: str
    invoice_number: str
    invoice_date: date
    due_date: date
    amount: Decimal
    disputed: bool
    settled_date: date
    days_late: int

    @property
    def paid_late(self) -> bool:
        """The realised outcome: settled after its due date (``DaysLate > 0``)."""
        return self.days_late > 0

    @property
    def payment_term_days(self) -> int:
        """Requested payment term: ``DueDate - InvoiceDate`` in days."""
        return (self.due_date - self.invoice_date).days

    def sort_key(self) -> tuple[date, int]:
        """Replay order: invoice date, then invoice number as a number."""
        return (self.invoice_date, int(self.invoice_number))

    def settled_before(self, as_of: date) -> bool:
        """Known to be settled at the start of day ``as_of``."""
        return self.settled_date < as_of


@dataclass(frozen=True)
class Position:
    """A customer's credit position when a new invoice is raised (as of ``as_of``).

    Money in EUR (``Decimal``, 2 decimals); ``days_past_due`` and ``history_days`` in days;
    ``avg_days_late`` in days (2 decimals); ``late_share`` is a 0-1 fraction (None without
    settled invoices). See the module docstring for every rule."""

    customer_id: str
    as_of: date
    exposure: Decimal
    overdue_amount: Decimal
    days_past_due: int
    avg_days_late: Decimal
    disputed_invoices: int
    open_invoices: int
    settled_invoices: int
    late_invoices: int
    late_share: Decimal | None
    first_invoice_date: date
    history_days: int
    months_known: int
    years_in_business: Decimal
    new_customer: bool
    invoiced_so_far: Decimal
    credit_limit: Decimal
    risk_class: str


def _parse_date(text: str) -> date:
    """``M/D/YYYY`` (US order, as in the CSV) → ``date``; rejects anything else."""
    return datetime.strptime(text.strip(), "%m/%d/%Y").date()


def _parse_money(text: str) -> Decimal:
    value = Decimal(text.strip())
    if not value.is_finite() or value != value.quantize(CENT):
        raise ValueError(f"not an amount with at most 2 decimals: {text!r}")
    return value.quantize(CENT)


def _parse_bool(text: str) -> bool:
    if text not in ("Yes", "No"):
        raise ValueError(f"expected Yes or No, got {text!r}")
    return text == "Yes"


def read_invoices(path: str | Path = DEFAULT_CSV) -> list[Invoice]:
    """Read the CSV at ``path`` and return its invoices in replay order (invoice date, then
    invoice number as a number). Amounts become ``Decimal`` (EUR), dates ``date``; a
    malformed row raises ``ValueError`` naming its line."""
    invoices: list[Invoice] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                invoices.append(Invoice(
                    country_code=row["countryCode"].strip(),
                    customer_id=row["customerID"].strip(),
                    invoice_number=row["invoiceNumber"].strip(),
                    invoice_date=_parse_date(row["InvoiceDate"]),
                    due_date=_parse_date(row["DueDate"]),
                    amount=_parse_money(row["InvoiceAmount"]),
                    disputed=_parse_bool(row["Disputed"].strip()),
                    settled_date=_parse_date(row["SettledDate"]),
                    days_late=int(row["DaysLate"]),
                ))
            except (KeyError, ValueError, ArithmeticError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from exc
    invoices.sort(key=Invoice.sort_key)
    return invoices


def _months_between(start: date, end: date) -> int:
    """Whole calendar months from ``start`` to ``end`` (like an age in months)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day:
        months -= 1
    return max(months, 0)


def risk_class(settled: int, late: int) -> str:
    """Rating from payment behaviour: ``settled`` invoices settled so far, ``late`` of them
    paid late. Fewer than 3 settled → ``medium``; late share < 20 % → ``low``; < 50 % →
    ``medium``; else ``high``. Thresholds are this demo's own choice (see module docstring)."""
    if settled < RISK_MIN_SETTLED:
        return "medium"
    share = Decimal(late) / Decimal(settled)
    if share < RISK_MEDIUM_FROM:
        return "low"
    if share < RISK_HIGH_FROM:
        return "medium"
    return "high"


def credit_limit(invoiced_so_far: Decimal, history_days: int) -> Decimal:
    """EUR limit: max(200.00, 3 × invoiced per 30 days), the average taken over
    ``max(history_days, 30)`` days; half-even to the cent."""
    per_month = invoiced_so_far * MONTH_DAYS / max(history_days, MONTH_DAYS)
    limit = (per_month * LIMIT_MONTHS).quantize(CENT, ROUND_HALF_EVEN)
    return max(CREDIT_LIMIT_FLOOR, limit)


def position_at(customer_id: str, as_of: date, earlier: Iterable[Invoice],
                first_invoice_date: date | None = None) -> Position:
    """The position of ``customer_id`` at the start of day ``as_of`` from its ``earlier``
    invoices (those raised before the new one in replay order; none may be dated after
    ``as_of``). ``first_invoice_date`` defaults to the earliest of them, or ``as_of``."""
    earlier = list(earlier)
    if any(inv.invoice_date > as_of for inv in earlier):
        raise ValueError("an earlier invoice is dated after the as-of date")
    first = first_invoice_date or min((inv.invoice_date for inv in earlier), default=as_of)
    open_ = [inv for inv in earlier if not inv.settled_before(as_of)]
    settled = [inv for inv in earlier if inv.settled_before(as_of)]
    overdue = [inv for inv in open_ if as_of > inv.due_date]
    late = sum(1 for inv in settled if inv.paid_late)
    avg_late = (Decimal(sum(inv.days_late for inv in settled)) / len(settled)
                if settled else Decimal(0)).quantize(CENT, ROUND_HALF_EVEN)
    history_days = (as_of - first).days
    months = _months_between(first, as_of)
    invoiced = sum((inv.amount for inv in earlier), Decimal("0.00"))
    return Position(
        customer_id=customer_id,
        as_of=as_of,
        exposure=sum((inv.amount for inv in open_), Decimal("0.00")),
        overdue_amount=sum((inv.amount for inv in overdue), Decimal("0.00")),
        days_past_due=max(((as_of - inv.due_date).days for inv in overdue), default=0),
        avg_days_late=avg_late,
        disputed_invoices=sum(1 for inv in open_ if inv.disputed),
        open_invoices=len(open_),
        settled_invoices=len(settled),
        late_invoices=late,
        late_share=(Decimal(late) / len(settled)) if settled else None,
        first_invoice_date=first,
        history_days=history_days,
        months_known=months,
        years_in_business=(Decimal(months) / 12).quantize(CENT, ROUND_DOWN),
        new_customer=not settled,
        invoiced_so_far=invoiced,
        credit_limit=credit_limit(invoiced, history_days),
        risk_class=risk_class(len(settled), late),
    )


def positions(invoices: Iterable[Invoice]) -> Iterator[tuple[Invoice, Position]]:
    """Replay ``invoices`` in replay order; yield each invoice with its customer's position
    just before it is raised (see the module docstring for the rules)."""
    history: dict[str, list[Invoice]] = defaultdict(list)
    for inv in sorted(invoices, key=Invoice.sort_key):
        earlier = history[inv.customer_id]
        first = earlier[0].invoice_date if earlier else inv.invoice_date
        yield inv, position_at(inv.customer_id, inv.invoice_date, earlier, first)
        earlier.append(inv)


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, ROUND_HALF_EVEN))


def to_request(invoice: Invoice, position: Position) -> dict[str, Any]:
    """The request for ``policies.yaml``: the new invoice as the order (amount in EUR as a
    2-decimal string, ``payment_term_days`` = due date − invoice date in days, ``id`` = the
    invoice number) and the position as the customer (``id`` = customerID)."""
    return {
        "order": {
            "id": invoice.invoice_number,
            "amount": _money(invoice.amount),
            "currency": CURRENCY,
            "payment_term_days": invoice.payment_term_days,
        },
        "customer": {
            "id": invoice.customer_id,
            "credit_limit": _money(position.credit_limit),
            "exposure": _money(position.exposure),
            "overdue_amount": _money(position.overdue_amount),
            "days_past_due": position.days_past_due,
            "avg_days_late": str(position.avg_days_late),
            "disputed_invoices": position.disputed_invoices,
            "years_in_business": str(position.years_in_business),
            "risk_class": position.risk_class,
            "new_customer": position.new_customer,
        },
    }


def replay_requests(path: str | Path = DEFAULT_CSV) -> Iterator[tuple[dict[str, Any], bool]]:
    """Yield ``(request, paid_late)`` for every invoice of the CSV at ``path``, in replay
    order: the request a credit check would have seen when the invoice was raised, and
    whether the invoice was later paid after its due date (``DaysLate > 0``)."""
    for invoice, position in positions(read_invoices(path)):
        yield to_request(invoice, position), invoice.paid_late
