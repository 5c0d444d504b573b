"""Customers: create or update a customer's credit position (``Customers.put``, the CSV
import ``Customers.import_rows``) and read it (``Customers.get``, ``customer_dict``).

A customer update never erases what the ledger recorded: ``open_receivables``,
``days_past_due`` and ``facts`` are kept when not given; ``open_orders`` and
``credit_balance`` belong to the ledger and are never set here."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import exc
from sqlmodel import Session

from api.core import chain
from api.core.bodies import MAX_MONEY
from api.core.database import Database
from api.core.values import customer_identifier, money
from api.customers.conditions import Preconditions
from api.customers.exceptions import ImportErrors, UnknownCustomer
from api.customers.history import Who, append
from api.customers.tables import Customer

__all__ = [
    "LEDGER_OWNED",
    "MASTER_COLUMNS",
    "RESERVED_FACTS",
    "Customers",
    "clean_facts",
    "customer_dict",
    "etag",
]

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
        who: Who | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Create or update a customer's ledger data (the Python API; ``PUT`` and ``PATCH``
        go through ``write``). ``currency`` and ``credit_limit`` are set;
        ``open_receivables``, ``days_past_due`` and ``facts`` (as a whole) are set when
        given and otherwise KEPT for an existing customer (ledger events move receivables:
        a limit update must never erase them) or 0 / none for a new one. ``open_orders``
        and ``credit_balance`` belong to the store and are never set here. Two concurrent
        creations of one new customer: the second updates the first's row."""
        row = _checked_row(
            customer_id,
            currency=currency,
            credit_limit=credit_limit,
            open_receivables=open_receivables,
            days_past_due=days_past_due,
            facts=facts,
        )
        return self.write(
            customer_id, lambda _current: row, source="put", who=who, reason=reason
        )[0]

    def write(
        self,
        customer_id: str,
        build: Callable[[dict[str, Any] | None], dict[str, Any]],
        *,
        conditions: Preconditions | None = None,
        must_exist: bool = False,
        source: str = "put",
        who: Who | None = None,
        reason: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Create or change one customer in one transaction, under its row lock: the
        ``conditions`` (``If-Match`` / ``If-None-Match``) are checked against the stored
        record's ETag (``PreconditionFailed``), then ``build(current)`` (the stored position,
        ``customer_dict``, or None for a new customer) returns the new values
        (``currency``, ``credit_limit``, ``open_receivables`` / ``days_past_due`` / ``facts``:
        None keeps the stored value; ``facts`` replaces them as a whole) and may raise to
        refuse (nothing written). ``must_exist``: no such customer → ``UnknownCustomer``.
        Returns the position and its ETag. A change bumps the customer's ``version`` and is
        chained in the customer history (``source``, ``who``, ``reason``) in the same
        transaction; a write that changes nothing leaves the record (and its ETag) as it was
        and records nothing."""
        customer_identifier(customer_id)
        for attempt in (1, 2):
            try:
                with self.db.session(write=True) as s:
                    cust = _lock(self.db, s, customer_id)
                    if cust is None and must_exist:
                        raise UnknownCustomer(customer_id)
                    if conditions is not None:
                        conditions.check(etag(cust) if cust is not None else None)
                    row = {
                        **build(customer_dict(cust) if cust is not None else None),
                        "customer_id": customer_id,
                    }
                    applied = _apply(self.db, s, cust, row, merge_facts=False)
                    if isinstance(applied, str):
                        field, sep, why = applied.partition(": ")
                        if sep and field == "open_receivables":  # 422 at that field
                            raise ValueError(f"{field}: customer {customer_id!r}: {why}")
                        raise ValueError(f"customer {customer_id!r} {applied}")
                    cust, changes = applied
                    entries = [(customer_id, cust.version, changes)] if changes else []
                    append(self.db, s, entries, source=source, who=who, reason=reason)
                    s.flush()
                    return customer_dict(cust), etag(cust)
            except exc.IntegrityError:  # created concurrently: once more, as an update
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's position (``customer_dict``), or None."""
        found = self.read(customer_id)
        return found[0] if found is not None else None

    def read(self, customer_id: str) -> tuple[dict[str, Any], str] | None:
        """The customer's position (``customer_dict``) and its ETag, or None."""
        with self.db.session(write=False) as s:
            cust = s.get(Customer, (self.db.unit, customer_id))
            return (customer_dict(cust), etag(cust)) if cust else None

    def import_rows(
        self, rows: list[dict[str, Any]], *, who: Who | None = None, reason: str | None = None
    ) -> int:
        """Create or update every customer of ``rows`` (``put`` fields plus ``line``) in ONE
        transaction: any bad row → ``ImportErrors`` listing every bad row (``{line, column,
        problem}``), nothing written. ``None`` (an empty cell, or no column) keeps the
        stored value; facts are merged into the stored ones (an empty cell never clears a
        fact, such as a blacklist flag). Each customer changed gets a history record
        (source ``import``, ``who``, ``reason``), chained after every row is locked."""
        # Rows in customer-id order: two imports lock the same customers in the same
        # order, so they queue instead of deadlocking.
        ordered = sorted(rows, key=lambda r: r["customer_id"])
        for attempt in (1, 2):
            errors: list[dict[str, Any]] = []
            entries: list[tuple[str, int, dict[str, Any]]] = []
            try:
                with self.db.session(write=True) as s:
                    for r in ordered:
                        row = {**r, "facts": r.get("facts") or None}
                        cust = _lock(self.db, s, r["customer_id"])
                        applied = _apply(self.db, s, cust, row, merge_facts=True)
                        if isinstance(applied, str):
                            field, sep, why = applied.partition(": ")
                            errors.append(
                                {
                                    "line": r["line"],
                                    "column": field if sep else "currency",
                                    "problem": f"the customer {why if sep else applied}",
                                }
                            )
                        elif applied[1]:
                            entries.append((r["customer_id"], applied[0].version, applied[1]))
                    if errors:
                        raise ImportErrors(sorted(errors, key=lambda e: e["line"]))  # rollback
                    append(self.db, s, entries, source="import", who=who, reason=reason)
                return len(rows)
            except exc.IntegrityError:  # a customer created concurrently: once more
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _checked_row(customer_id: str, **values: Any) -> dict[str, Any]:
    """The Python API's arguments checked as the store holds them (raises ValueError)."""
    customer_identifier(customer_id)
    currency = values["currency"]
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ValueError("currency: an ISO 4217 code such as 'EUR'")
    limit = money(values["credit_limit"], "credit_limit")
    receivables = values["open_receivables"]
    if receivables is not None:
        receivables = money(receivables, "open_receivables")
    if limit < 0 or (receivables is not None and receivables < 0):
        raise ValueError("credit_limit and open_receivables must not be negative")
    days = values["days_past_due"]
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, int):
            raise ValueError("days_past_due: a whole number of days")
        if days < 0:
            raise ValueError("days_past_due must not be negative")
    facts = values["facts"]
    return {
        "currency": currency.upper(),
        "credit_limit": limit,
        "open_receivables": receivables,
        "days_past_due": days,
        "facts": None if facts is None else clean_facts(facts),
    }


def _lock(db: Database, s: Session, customer_id: str) -> Customer | None:
    """The customer's row, locked for this transaction (None: no such customer)."""
    return s.get(Customer, (db.unit, customer_id), with_for_update=True)


_CENTS = Decimal("0.01")  # the money columns' scale (api.core.types.Money)

#: the master-data columns a PUT, PATCH or import writes (besides ``facts``)
MASTER_COLUMNS = ("currency", "credit_limit", "open_receivables", "days_past_due")


def _apply(
    db: Database, s: Session, cust: Customer | None, r: dict[str, Any], *, merge_facts: bool
) -> tuple[Customer, dict[str, dict[str, Any]]] | str:
    """Create or update one customer (``cust``: its locked row, None for a new one) in
    session ``s``. ``None`` values of ``open_receivables``, ``days_past_due``, ``facts``
    keep the stored ones; with ``merge_facts`` the given facts are added to the stored ones
    (the CSV import: an empty cell never clears a fact), else they replace them. Returns
    the customer and what changed (``{field or "facts.<name>": {"old", "new"}}``; old is
    None for a new customer or fact, new None for a removed fact), or the reason it cannot
    be changed (text). A change bumps ``version`` and ``updated_at``; no change, no write."""
    facts = None if r["facts"] is None else chain.jsonable(r["facts"])
    now = db.clock.now()
    # as the column stores them (two decimals): "7" and "7.00" are one value, one ETag
    r = {**r, **{k: r[k].quantize(_CENTS) for k in ("credit_limit", "open_receivables")
                 if r[k] is not None}}
    receivables = r["open_receivables"]
    if receivables is None and cust is not None:
        receivables = cust.open_receivables
    if (receivables or 0) + (cust.open_orders if cust is not None else 0) >= MAX_MONEY:
        return ("open_receivables: receivables and open orders would reach 10^15 "
                "(what a decision can read); nothing was changed")
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
            version=1,
        )
        s.add(cust)
        s.flush()  # a concurrent creation of the same id fails here (IntegrityError)
        new = {c: getattr(cust, c) for c in MASTER_COLUMNS}
        new.update({f"facts.{k}": v for k, v in cust.facts.items()})
        return cust, {k: {"old": None, "new": v} for k, v in chain.jsonable(new).items()}
    if cust.currency != r["currency"] and cust.open_orders != 0:
        return f"has open orders in {cust.currency}; its currency cannot change"
    old = {c: getattr(cust, c) for c in MASTER_COLUMNS}
    old_facts = dict(cust.facts or {})
    new = {
        "currency": r["currency"],
        "credit_limit": r["credit_limit"],
        "open_receivables": r["open_receivables"]
        if r["open_receivables"] is not None
        else cust.open_receivables,
        "days_past_due": r["days_past_due"]
        if r["days_past_due"] is not None
        else cust.days_past_due,
    }
    if facts is None:
        new_facts = old_facts
    else:
        new_facts = {**old_facts, **facts} if merge_facts else facts
    changes = {
        c: {"old": old[c], "new": new[c]} for c in MASTER_COLUMNS if old[c] != new[c]
    }
    for name in sorted(set(old_facts) | set(new_facts)):
        before, after = old_facts.get(name), new_facts.get(name)
        if before != after or type(before) is not type(after):
            changes[f"facts.{name}"] = {"old": before, "new": after}
    if not changes:
        return cust, {}
    for c in MASTER_COLUMNS:
        setattr(cust, c, new[c])
    cust.facts = new_facts
    cust.version = (cust.version or 0) + 1
    cust.updated_at = now
    return cust, chain.jsonable(changes)


def etag(c: Customer) -> str:
    """The customer record's strong ETag: a hash of everything a ``PUT`` / ``PATCH`` can
    write (currency, credit limit, open receivables, days past due, facts) and the
    ``version`` counter. A ledger event that moves the receivables changes it too (a PUT
    could overwrite them); open orders and the credit balance, which no PUT or PATCH
    writes, do not."""
    data = {
        "business_unit": c.business_unit,
        "customer_id": c.customer_id,
        "version": c.version,
        "facts": dict(c.facts or {}),
        **{col_: getattr(c, col_) for col_ in MASTER_COLUMNS},
    }
    return f'"{chain.content_hash(data)[:32]}"'


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
