"""Customers: create or update a customer's credit position (``Customers.put``, the CSV
import ``Customers.import_rows``) and read it (``Customers.get``, ``customer_dict``).

A customer update never erases what the ledger recorded: ``open_receivables``,
``days_past_due`` and ``facts`` are kept when not given; ``open_orders`` and
``credit_balance`` belong to the ledger and are never set here."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import exc
from sqlmodel import Session

from api.core import chain
from api.core.database import Database
from api.core.values import customer_identifier, money
from api.customers.exceptions import ImportErrors
from api.customers.tables import Customer

__all__ = ["LEDGER_OWNED", "RESERVED_FACTS", "Customers", "clean_facts", "customer_dict", "upsert"]

# Customer inputs owned by the ledger: a request may not override them for a known customer.
LEDGER_OWNED = ("customer.credit_limit", "customer.exposure")
# Order fields given at the top level of an order, never in its facts.
RESERVED_FACTS = (
    "order.id",
    "order.amount",
    "order.currency",
    "order.payment_term_days",
    "customer.id",
)


def clean_facts(facts: dict[str, Any] | None) -> dict[str, Any]:
    """Ledger facts keyed by input name without the group (``risk_class``); a
    ``customer.`` prefix is accepted and dropped."""
    out: dict[str, Any] = {}
    for key, value in (facts or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"facts: invalid key {key!r}")
        name = key.removeprefix("customer.")
        if "." in name:
            raise ValueError(f"facts: {key!r} is not a customer fact (customer.<name>)")
        if f"customer.{name}" in RESERVED_FACTS + LEDGER_OWNED + ("customer.days_past_due",):
            raise ValueError(f"facts: {key!r} is a ledger column; pass it as an argument")
        out[name] = value
    return chain.jsonable(out)


class Customers:
    """The customers of one database."""

    def __init__(self, db: Database):
        self.db = db

    def put(
        self,
        customer_id: str,
        *,
        currency: str,
        credit_limit: Decimal,
        open_receivables: Decimal | None = None,
        days_past_due: int | None = None,
        facts: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or update a customer's ledger data. ``currency`` and ``credit_limit`` are
        set; ``open_receivables``, ``days_past_due`` and ``facts`` (as a whole) are set when
        given and otherwise KEPT for an existing customer (ledger events move receivables:
        a limit update must never erase them) or 0 / none for a new one. ``open_orders``
        and ``credit_balance`` belong to the store and are never set here. Two concurrent
        creations of one new customer: the second updates the first's row."""
        customer_identifier(customer_id)
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            raise ValueError("currency: an ISO 4217 code such as 'EUR'")
        currency = currency.upper()
        limit = money(credit_limit, "credit_limit")
        receivables = (
            None if open_receivables is None else money(open_receivables, "open_receivables")
        )
        if limit < 0 or (receivables is not None and receivables < 0):
            raise ValueError("credit_limit and open_receivables must not be negative")
        if days_past_due is not None:
            if isinstance(days_past_due, bool) or not isinstance(days_past_due, int):
                raise ValueError("days_past_due: a whole number of days")
            if days_past_due < 0:
                raise ValueError("days_past_due must not be negative")
        clean = None if facts is None else clean_facts(facts)
        row = {
            "customer_id": customer_id,
            "currency": currency,
            "credit_limit": limit,
            "open_receivables": receivables,
            "days_past_due": days_past_due,
            "facts": clean,
        }
        for attempt in (1, 2):
            try:
                with self.db.session(write=True) as s:
                    cust = upsert(self.db, s, row, merge_facts=False)
                    if isinstance(cust, str):
                        raise ValueError(f"customer {customer_id!r} {cust}")
                    s.flush()
                    return customer_dict(cust)
            except exc.IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's position (``customer_dict``), or None."""
        with self.db.session(write=False) as s:
            cust = s.get(Customer, (self.db.unit, customer_id))
            return customer_dict(cust) if cust else None

    def import_rows(self, rows: list[dict[str, Any]]) -> int:
        """Create or update every customer of ``rows`` (``put`` fields plus ``line``) in ONE
        transaction: any bad row → ``ImportErrors`` listing every bad row (``{line, column,
        problem}``), nothing written. ``None`` (an empty cell, or no column) keeps the
        stored value; facts are merged into the stored ones (an empty cell never clears a
        fact, such as a blacklist flag)."""
        # Rows in customer-id order: two imports lock the same customers in the same
        # order, so they queue instead of deadlocking.
        ordered = sorted(rows, key=lambda r: r["customer_id"])
        for attempt in (1, 2):
            errors: list[dict[str, Any]] = []
            try:
                with self.db.session(write=True) as s:
                    for r in ordered:
                        row = {**r, "facts": r.get("facts") or None}
                        cust = upsert(self.db, s, row, merge_facts=True)
                        if isinstance(cust, str):
                            errors.append(
                                {
                                    "line": r["line"],
                                    "column": "currency",
                                    "problem": f"the customer {cust}",
                                }
                            )
                    if errors:
                        raise ImportErrors(sorted(errors, key=lambda e: e["line"]))  # rollback
                return len(rows)
            except exc.IntegrityError:  # a customer created concurrently: once more
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def upsert(db: Database, s: Session, r: dict[str, Any], *, merge_facts: bool) -> Customer | str:
    """Create or update one customer in session ``s`` (row lock first). ``None`` values
    of ``open_receivables``, ``days_past_due``, ``facts`` keep the stored ones; with
    ``merge_facts`` the given facts are added to the stored ones (the CSV import: an
    empty cell never clears a fact), else they replace them. Returns the customer, or
    the reason it cannot be changed (text)."""
    cust = s.get(Customer, (db.unit, r["customer_id"]), with_for_update=True)
    facts = None if r["facts"] is None else chain.jsonable(r["facts"])
    now = db.clock.now()
    if cust is None:
        cust = Customer(
            business_unit=db.unit,
            updated_at=now,
            customer_id=r["customer_id"],
            currency=r["currency"],
            credit_limit=r["credit_limit"],
            open_receivables=r["open_receivables"]
            if r["open_receivables"] is not None
            else Decimal("0.00"),
            open_orders=Decimal("0.00"),
            days_past_due=r["days_past_due"] or 0,
            facts=facts or {},
        )
        s.add(cust)
        s.flush()  # a concurrent creation of the same id fails here (IntegrityError)
        return cust
    if cust.currency != r["currency"] and cust.open_orders != 0:
        return f"has open orders in {cust.currency}; its currency cannot change"
    cust.currency = r["currency"]
    cust.credit_limit = r["credit_limit"]
    if r["open_receivables"] is not None:
        cust.open_receivables = r["open_receivables"]
    if r["days_past_due"] is not None:
        cust.days_past_due = r["days_past_due"]
    if facts is not None:
        cust.facts = {**(cust.facts or {}), **facts} if merge_facts else facts
    cust.updated_at = now
    return cust


def customer_dict(c: Customer) -> dict[str, Any]:
    """A customer's position: the stored columns plus ``exposure`` (open receivables + open
    orders) and ``available_credit`` (credit limit − exposure)."""
    exposure = c.open_receivables + c.open_orders
    return {
        "customer_id": c.customer_id,
        "currency": c.currency,
        "credit_limit": c.credit_limit,
        "open_receivables": c.open_receivables,
        "open_orders": c.open_orders,
        "exposure": exposure,
        "available_credit": c.credit_limit - exposure,
        "days_past_due": c.days_past_due,
        "credit_balance": c.credit_balance,
        "facts": dict(c.facts or {}),
        "updated_at": chain.as_utc(c.updated_at),
    }
