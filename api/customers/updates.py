"""What ``PUT`` and ``PATCH /v1/customers/{id}`` write: the body checked against the policy
(``checked_values``, the one check of both), ``PUT``'s replacement (``replacement``) and
``PATCH``'s merge (``merge_patch``, RFC 7396). The merge and the last checks run inside the
write transaction, under the customer's row lock, on the record as stored then
(``Customers.write`` calls them): nothing is checked against a record that changed since."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from api.core.bodies import decimals_check, money_facts
from api.core.problems import Problem
from api.customers.models import (
    CustomerBody,
    CustomerPatch,
    FactRefused,
    check_customer_facts,
    customer_currency_message,
    customer_fact_spec,
)

__all__ = ["PATCH_FIELDS", "checked_values", "merge_patch", "patch_nulls", "replacement"]

#: the fields of a PATCH body that are not facts (null is refused: they cannot be removed)
PATCH_FIELDS = ("currency", "credit_limit", "open_receivables", "days_past_due")


def _refuse(errors: list[dict[str, str]], what: str = "the customer") -> None:
    if errors:
        n = len(errors)
        raise Problem(
            "invalid_request",
            f"{n} problem{'s' if n != 1 else ''} with {what}; nothing was stored",
            errors=errors,
        )


def checked_values(
    policy: Any,
    *,
    currency: str,
    credit_limit: Decimal,
    open_receivables: Decimal | None,
    days_past_due: int | None,
    facts: dict[str, Any] | None,
) -> dict[str, Any]:
    """A customer's values checked against the policy, every problem at once (422
    ``Problem``): the currency is the policy's, amounts have its decimals and are not
    negative, every fact is a customer input of the policy of its type and range. Returns
    the values as the store takes them (facts keyed without ``customer.``, typed)."""
    if currency != policy.currency:
        message = customer_currency_message(policy, currency)
        _refuse([{"path": "currency", "code": "currency_mismatch", "message": message}])
    amounts = {"credit_limit": credit_limit}
    if open_receivables is not None:
        amounts["open_receivables"] = open_receivables
    decimals_check(policy, **amounts)
    errors = [
        {"path": p, "code": "below_min", "message": "must not be negative"}
        for p, v in (
            ("credit_limit", credit_limit),
            ("open_receivables", open_receivables),
            ("days_past_due", days_past_due),
        )
        if v is not None and v < 0
    ]
    clean = None
    if facts is not None:
        errors += money_facts(policy, facts, "facts")
        clean, bad_facts = check_customer_facts(policy, facts)
        errors += bad_facts
    _refuse(errors)
    return {
        "currency": currency,
        "credit_limit": credit_limit,
        "open_receivables": open_receivables,
        "days_past_due": days_past_due,
        "facts": clean,
    }


def replacement(policy: Any, body: CustomerBody) -> Callable[[dict[str, Any] | None], dict]:
    """``PUT``: the body checked now (422 before any precondition), and the build function
    of ``Customers.write``: an existing customer is replaced only with ``facts`` named (its
    facts as a whole; ``{}`` for none), so no fact, such as a blacklist, is dropped by
    leaving the field out; ``open_receivables`` and ``days_past_due`` (moved by the
    ledger and the AR system) are kept when left out."""
    values = checked_values(
        policy,
        currency=body.currency,
        credit_limit=body.credit_limit,
        open_receivables=body.open_receivables,
        days_past_due=body.days_past_due,
        facts=body.facts,
    )

    def build(current: dict[str, Any] | None) -> dict[str, Any]:
        if current is not None and body.facts is None:
            _refuse(
                [
                    {
                        "path": "facts",
                        "code": "missing",
                        "message": "PUT replaces the customer: send its facts as a whole ({} "
                        "for none), or PATCH only the fields to change",
                    }
                ]
            )
        return values

    return build


def patch_nulls(data: dict[str, Any]) -> list[dict[str, str]]:
    """The fields of a merge patch set to ``null`` that cannot be removed: ``currency``,
    ``credit_limit``, ``open_receivables``, ``days_past_due`` (send a value) and ``facts``
    as a whole (name each fact to remove with ``null``)."""
    errors = [
        {
            "path": name,
            "code": "null_value",
            "message": f"{name} cannot be removed: send a value, or leave it out to keep "
            "the stored one",
        }
        for name in PATCH_FIELDS
        if name in data and data[name] is None
    ]
    if "facts" in data and data["facts"] is None:
        errors.append(
            {
                "path": "facts",
                "code": "null_value",
                "message": 'facts cannot be removed as a whole: name each fact to remove, '
                'e.g. {"facts": {"blacklisted": null}}',
            }
        )
    return errors


def merge_patch(policy: Any, patch: CustomerPatch) -> Callable[[dict[str, Any] | None], dict]:
    """``PATCH``: the fact names and the fields' own values checked now (unknown facts,
    ledger columns, one fact named twice, another currency, negative amounts, too many
    decimals: 422 before anything is read or any precondition), and the build function of
    ``Customers.write``: the patch merged into the stored customer (a fact set to ``null``
    removed), the merged result checked as a ``PUT`` body is (``checked_values``)."""
    named = patch.model_fields_set
    sets: dict[str, Any] = {}  # fact (without customer.) -> raw value (None: remove)
    paths: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    for name, raw in (patch.facts or {}).items():
        path = f"facts.{name[:60]}"
        try:
            short = customer_fact_spec(policy, name).path.removeprefix("customer.")
        except FactRefused as e:
            errors.append({"path": path, "code": e.code, "message": str(e)})
            continue
        if short in sets:
            errors.append(
                {
                    "path": path,
                    "code": "duplicate_fact",
                    "message": f"the fact {short!r} is named twice ({paths[short]!r} too)",
                }
            )
            continue
        sets[short], paths[short] = raw, name
    errors += money_facts(policy, {k: v for k, v in sets.items() if v is not None}, "facts")
    # the fields' own checks (as checked_values makes them) before any precondition
    if "currency" in named and patch.currency != policy.currency:
        message = customer_currency_message(policy, patch.currency)
        errors.append({"path": "currency", "code": "currency_mismatch", "message": message})
    errors += [
        {"path": f, "code": "below_min", "message": "must not be negative"}
        for f in ("credit_limit", "open_receivables", "days_past_due")
        if f in named and getattr(patch, f) < 0
    ]
    _refuse(errors, "the patch")
    amounts = {f: getattr(patch, f) for f in ("credit_limit", "open_receivables") if f in named}
    if amounts:
        decimals_check(policy, **amounts)

    def build(current: dict[str, Any] | None) -> dict[str, Any]:
        assert current is not None  # Customers.write(must_exist=True)
        facts = dict(current["facts"])
        for short, raw in sets.items():
            if raw is None:
                facts.pop(short, None)
            else:
                facts[short] = raw
        pick = {f: getattr(patch, f) if f in named else current[f] for f in PATCH_FIELDS}
        values = checked_values(policy, **pick, facts=facts)
        if "facts" not in named:
            values["facts"] = None  # kept as stored
        return values

    return build
