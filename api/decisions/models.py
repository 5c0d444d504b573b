"""Request models of deciding an order (``POST /v1/decisions``) and the checks that need the
policy."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from api.core.bodies import Body, Currency, CustomerId, Identifier, IsoDate, Money, Whole
from api.core.problems import Problem

_RESERVED_FACTS = {
    "order.id": "order_id",
    "order.amount": "amount",
    "order.currency": "currency",
    "order.payment_term_days": "payment_term_days",
    "customer.id": "customer_id",
}
_FACT_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def _fact_value(key: str, value: Any) -> None:
    if isinstance(value, dict | list):
        raise PydanticCustomError(
            "invalid_type",
            "facts.{key}: a fact is a single value (text, number or true/false)",
            {"key": key},
        )


def _order_facts(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "invalid_type",
            'facts is a JSON object of policy inputs such as {"customer.risk_class": "low"}',
        )
    for key, item in value.items():
        if key in _RESERVED_FACTS:
            raise PydanticCustomError(
                "invalid_value",
                "facts.{key}: send it as the top-level field '{field}'",
                {"key": key, "field": _RESERVED_FACTS[key]},
            )
        if not _FACT_KEY.fullmatch(key):
            raise PydanticCustomError(
                "invalid_value",
                "facts.{key}: a fact is named by its policy input, group.name "
                "(e.g. 'customer.risk_class')",
                {"key": key[:60]},
            )
        _fact_value(key, item)
    return value


OrderFacts = Annotated[dict[str, Any], BeforeValidator(_order_facts)]


class DecisionRequest(Body):
    """An order to decide. Money as a string (``"12500.00"``) or whole number."""

    order_id: Identifier
    customer_id: CustomerId
    amount: Money = Field(description='Order value, e.g. "12500.00", in `currency`')
    currency: Currency
    payment_term_days: Whole
    order_date: IsoDate = Field(  # type: ignore[assignment]
        default=None,
        description="Date of the order, YYYY-MM-DD (ISO 8601); picks the exchange rate of an "
        "order in another currency than the policy's (latest rate on or before it). Default: "
        "today.",
    )
    facts: OrderFacts = Field(
        default_factory=dict,
        description="Other policy inputs for this order by input name, e.g. "
        '{"customer.risk_class": "low"} (request values win over the ledger)',
    )


def engine_path(path: str) -> str:
    """Engine request path → the path in the POST /v1/decisions body."""
    return {
        "order.amount": "amount",
        "order.payment_term_days": "payment_term_days",
        "order.currency": "currency",
        "order.id": "order_id",
        "customer.id": "customer_id",
    }.get(path, f"facts.{path}" if path else path)


def currency_check(policy: Any, currency: str) -> None:
    """Refuse (422 ``currency_mismatch``) an order in ``currency`` other than the policy's
    when no exchange rate of that currency is loaded at all."""
    if currency != policy.currency:
        message = (
            f"the policy decides in {policy.currency} and no {currency}->{policy.currency} "
            "exchange rates are loaded: load them with PUT /v1/fx-rates (admin) or send "
            f"the amount in {policy.currency}"
        )
        raise Problem(
            "invalid_request",
            message,
            errors=[{"path": "currency", "code": "currency_mismatch", "message": message}],
        )
