"""Load the accounts-receivable customers into the Creditgate service's ledger.

Usage (from the repository root)::

    .venv/bin/python examples/receivables/load_customers.py [--csv PATH] [--as-of YYYY-MM-DD]
        [--database-url URL | --url http://127.0.0.1:8000 --key ADMIN_KEY]

Each of the 100 customers of the CSV (default ``../shared/data/ar-invoices/
accounts-receivable.csv``) gets its credit position as of one date (default: the day after the
last invoice of the file, i.e. "at the end of the data"), worked out with the rules of
``positions.py``: credit limit = max(EUR 200, 3 × average monthly invoicing), open receivables
= the invoices not yet settled on that date, days past due of the oldest overdue one, and the
other policy inputs (risk class, average days late, overdue amount, disputes, the
years-in-business proxy, new customer) as ledger facts. Amounts are EUR (the data has no
currency), exact ``Decimal``, sent as 2-decimal strings.

Without ``--url`` the customers are written straight into the store
(``Store.customers.put``, ``api.customers.persistence``) at ``--database-url`` (default:
the service settings, ``CREDITGATE_DATABASE_URL`` / ``DATABASE_URL``); with ``--url`` and an
``admin`` key they are sent as ``PUT /v1/customers/{id}`` to a running service. Loading
again replaces the positions (open approved orders are kept: they belong to the service).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import positions  # noqa: E402

__all__ = [
    "customer_body",
    "demo_customer",
    "end_of_data",
    "load_into_store",
    "load_over_http",
    "positions_at",
]

CENT = Decimal("0.01")


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, ROUND_HALF_EVEN))


def customer_body(position: positions.Position) -> dict[str, Any]:
    """The ``PUT /v1/customers/{id}`` body (and ``Customers.put`` arguments) for a
    position: credit limit and open receivables (= the position's exposure: its open
    invoices) in EUR as strings, ``days_past_due``, and every other policy input of
    ``positions.to_request`` as a ledger fact."""
    return {
        "currency": positions.CURRENCY,
        "credit_limit": _money(position.credit_limit),
        "open_receivables": _money(position.exposure),
        "days_past_due": position.days_past_due,
        "facts": {
            "overdue_amount": _money(position.overdue_amount),
            "avg_days_late": str(position.avg_days_late),
            "disputed_invoices": position.disputed_invoices,
            "years_in_business": str(position.years_in_business),
            "risk_class": position.risk_class,
            "new_customer": position.new_customer,
        },
    }


def end_of_data(invoices: list[positions.Invoice]) -> date:
    """The as-of date "at the end of the data": the day after the last invoice date."""
    return max(inv.invoice_date for inv in invoices) + timedelta(days=1)


def positions_at(
    invoices: list[positions.Invoice], as_of: date | None = None
) -> list[positions.Position]:
    """Every customer's position at the start of ``as_of`` (default ``end_of_data``) from
    its invoices raised before that day, sorted by customer id."""
    as_of = as_of or end_of_data(invoices)
    by_customer: dict[str, list[positions.Invoice]] = defaultdict(list)
    for inv in sorted(invoices, key=positions.Invoice.sort_key):
        if inv.invoice_date < as_of:
            by_customer[inv.customer_id].append(inv)
    return [
        positions.position_at(cid, as_of, invs, invs[0].invoice_date)
        for cid, invs in sorted(by_customer.items())
    ]


def demo_customer(found: list[positions.Position]) -> positions.Position:
    """A customer for the demo call: low risk, nothing overdue, the most available credit
    (falls back to the most available credit of all)."""

    def available(p: positions.Position) -> Decimal:
        return p.credit_limit - p.exposure

    good = [p for p in found if p.risk_class == "low" and p.days_past_due == 0]
    return max(good or found, key=lambda p: (available(p), p.customer_id))


def load_into_store(database_url: str, found: list[positions.Position]) -> int:
    """Write every position into the store at ``database_url`` (migrations applied first)."""
    from api.store import Store

    store = Store(database_url)
    try:
        store.upgrade()
        for p in found:
            body = customer_body(p)
            store.customers.put(
                p.customer_id,
                currency=body["currency"],
                credit_limit=Decimal(body["credit_limit"]),
                open_receivables=Decimal(body["open_receivables"]),
                days_past_due=body["days_past_due"],
                facts=body["facts"],
            )
    finally:
        store.dispose()
    return len(found)


def put_customer(client: Any, customer_id: str, body: dict[str, Any]) -> Any:
    """``PUT /v1/customers/{id}`` of a whole position: created with ``If-None-Match: *``;
    a customer that exists already (412) is read and replaced with ``If-Match`` and the ETag
    read. Returns the 200 response; raises ``RuntimeError`` on a refusal."""
    url = f"/v1/customers/{quote(customer_id, safe='')}"
    r = client.put(url, json=body, headers={"If-None-Match": "*"})
    if r.status_code == 412:
        current = client.get(url)
        if current.status_code == 200:
            r = client.put(url, json=body, headers={"If-Match": current.headers["ETag"]})
    if r.status_code != 200:
        raise RuntimeError(f"PUT /v1/customers/{customer_id}: {r.status_code} {r.text}")
    return r


def load_over_http(client: Any, found: list[positions.Position]) -> int:
    """``PUT /v1/customers/{id}`` for every position (``client``: an ``httpx.Client`` with
    the base URL and an admin key; ``put_customer``). Raises ``RuntimeError`` on the first
    refusal."""
    for p in found:
        put_customer(client, p.customer_id, customer_body(p))
    return len(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(positions.DEFAULT_CSV),
                        help="accounts-receivable CSV (default: the shared sample)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=None,
                        help="position date (default: the day after the last invoice)")
    parser.add_argument("--database-url", default=None,
                        help="store to write to (default: CREDITGATE_DATABASE_URL / "
                        "DATABASE_URL, as the service)")
    parser.add_argument("--url", default=None, help="a running service instead of the store")
    parser.add_argument("--key", default=None, help="admin API key (with --url)")
    parser.add_argument("--print-demo", action="store_true",
                        help="print only the demo customer's id on stdout")
    args = parser.parse_args(argv)

    invoices = positions.read_invoices(args.csv)
    as_of = args.as_of or end_of_data(invoices)
    found = positions_at(invoices, as_of)
    if not found:
        print(f"no invoices before {as_of} in {args.csv}", file=sys.stderr)
        return 2
    if args.url:
        import httpx

        if not args.key:
            print("--url needs --key (an admin key)", file=sys.stderr)
            return 2
        with httpx.Client(base_url=args.url,
                          headers={"Authorization": f"Bearer {args.key}"}) as client:
            n = load_over_http(client, found)
        where = args.url
    else:
        from api.core.settings import Settings

        url = args.database_url or Settings().database_url
        n = load_into_store(url, found)
        where = url
    demo = demo_customer(found)
    out = sys.stderr if args.print_demo else sys.stdout
    print(f"loaded {n} customers (positions as of {as_of}, EUR) into {where}", file=out)
    print(f"demo customer {demo.customer_id}: limit {_money(demo.credit_limit)}, open "
          f"receivables {_money(demo.exposure)}, risk class {demo.risk_class}", file=out)
    if args.print_demo:
        print(demo.customer_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
