"""Request models of the customers (``PUT`` and ``PATCH /v1/customers/{id}``) and the checks
of customer facts against the policy (also used by the CSV import)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from api.core.bodies import Body, Currency, Money, Whole
from api.core.problems import Problem
from api.core.schemas import NON_NEGATIVE_MONEY_SCHEMA, WHOLE_SCHEMA, DateTimeText, DecimalText

_CUSTOMER_FACT = re.compile(r"^(customer\.)?[a-z][a-z0-9_]*$")

#: customer ids that are paths of their own: ``/v1/customers/import`` is the (deprecated)
#: customer import, so no customer may be called "import"
RESERVED_CUSTOMER_IDS = frozenset({"import"})


def reserved_customer_id(cid: str) -> str:
    """Refuse (``PydanticCustomError`` ``invalid_value``) a customer id that is reserved
    (``RESERVED_CUSTOMER_IDS``) for a new or updated customer: the PUT path and the CSV
    import. Returns ``cid``."""
    if cid in RESERVED_CUSTOMER_IDS:
        raise PydanticCustomError(
            "invalid_value",
            "{value} is reserved: /v1/customers/{cid} is the customer import's old path, "
            "never a customer; choose another customer id",
            {"value": repr(cid), "cid": cid},
        )
    return cid


def _customer_facts(value: Any) -> dict[str, Any]:
    """Only the shape: each name and value is checked against the policy by
    ``check_customer_facts`` (every problem reported, with its path)."""
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "invalid_type",
            'facts is a JSON object of customer inputs such as {"risk_class": "low"}',
        )
    return value


# Customer inputs the ledger holds in its own columns: never a fact. Value: where to put it
# instead, in a PUT body ("field") and in a CSV import ("column").
LEDGER_FACTS = {
    "customer.credit_limit": {
        "field": "send it as the top-level field 'credit_limit'",
        "column": "use the column 'credit_limit'",
    },
    "customer.days_past_due": {
        "field": "send it as the top-level field 'days_past_due'",
        "column": "use the column 'days_past_due'",
    },
    "customer.exposure": {
        "field": "it is computed (open receivables + open approved orders): send the "
        "top-level field 'open_receivables'",
        "column": "it is computed (open receivables + open approved orders): use the "
        "column 'open_receivables'",
    },
    "customer.id": {
        "field": "the customer id is the one in the URL (/v1/customers/{id})",
        "column": "use the column 'customer_id'",
    },
}


class FactRefused(ValueError):
    """A customer fact name the policy does not accept: stable ``code``, human message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def customer_fact_spec(policy: Any, name: str, where: str = "field") -> Any:
    """The policy input (``InputDef``) of the customer fact ``name`` (``risk_class`` or
    ``customer.risk_class``); raises ``FactRefused``: ``ledger_field`` for a name the ledger
    holds in its own column (the message names the ``where`` — "field" or "column" — to
    use), ``unknown_fact`` for a name that is not a customer input of the policy (with a
    "did you mean")."""
    import difflib

    path = name if name.startswith("customer.") else f"customer.{name}"
    if path in LEDGER_FACTS:
        short = path.removeprefix("customer.")
        raise FactRefused(
            "ledger_field",
            f"{short} is held by the ledger, not a fact; {LEDGER_FACTS[path][where]}",
        )
    spec = policy.inputs.get(path) if _CUSTOMER_FACT.fullmatch(name) else None
    if spec is None:
        known = sorted(
            p.removeprefix("customer.")
            for p in policy.inputs
            if p.startswith("customer.") and p not in LEDGER_FACTS
        )
        close = difflib.get_close_matches(path.removeprefix("customer."), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FactRefused(
            "unknown_fact",
            f"{name[:60]!r} is not a customer input of the policy{hint}; known: "
            + ", ".join(known),
        )
    return spec


def customer_fact_value(spec: Any, raw: Any, minor_units: int) -> Any:
    """``raw`` checked against the input's type, range and allowed values
    (``engine.inputs.coerce``) as the JSON value the ledger stores: numbers other than
    whole ``int`` inputs as exact decimal strings (money in the policy currency's minor
    unit; a decimal without trailing zeros, so an equal value is never a change). Raises
    ``InputErrors``."""
    from engine.inputs import coerce
    from engine.values import CONTEXT

    value = coerce(spec, raw, minor_units)
    if isinstance(value, Decimal):
        if spec.type.kind != "money":  # "12.50" and "12.5" are one value: one stored text
            value = value.normalize(CONTEXT) if value else Decimal(0)  # 60 digits: exact
        return format(value, "f")
    return value


def check_customer_facts(
    policy: Any, facts: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The customer facts of a PUT body checked against the policy, as the ledger stores them
    (keyed without the ``customer.`` group), and EVERY problem as ``{path: "facts.NAME",
    code, message}`` (the CSV import uses the same two checks per column and cell)."""
    from engine.inputs import InputErrors

    clean: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name, raw in facts.items():
        path = f"facts.{name[:60]}"
        try:
            spec = customer_fact_spec(policy, name)
        except FactRefused as e:
            errors.append({"path": path, "code": e.code, "message": str(e)})
            continue
        if isinstance(raw, float | Decimal) and spec.type.kind == "money":
            continue  # reported by money_facts (inexact_number)
        short = spec.path.removeprefix("customer.")
        if short in clean:
            errors.append(
                {
                    "path": path,
                    "code": "duplicate_fact",
                    "message": f"the fact {short!r} is named twice (with and without customer.)",
                }
            )
            continue
        try:
            clean[short] = customer_fact_value(spec, raw, policy.minor_units)
        except InputErrors as e:
            errors.extend(
                {"path": path, "code": err.code, "message": err.message} for err in e.errors
            )
    return clean, errors


_LEDGER_NAMES = sorted(
    {name for path in LEDGER_FACTS for name in (path, path.removeprefix("customer."))}
)
_CUSTOMER_FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Other customer inputs of the policy, with or without `customer.`, e.g. "
    '{"risk_class": "low", "years_in_business": 12}; replaces the stored facts; left out: '
    "kept. Which names and values a policy accepts is the policy's (`GET /v1/policy`); "
    "the ledger's own columns are not facts",
    "propertyNames": {"pattern": _CUSTOMER_FACT.pattern, "not": {"enum": _LEDGER_NAMES}},
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
CustomerFacts = Annotated[
    dict[str, Any], BeforeValidator(_customer_facts), WithJsonSchema(_CUSTOMER_FACTS_SCHEMA)
]
NonNegativeMoney = Annotated[Money, WithJsonSchema(NON_NEGATIVE_MONEY_SCHEMA)]
#: why a customer is changed: recorded in its history, not a customer field
Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Why (recorded in the customer's history with who and when; not a "
        "customer field): 1 to 500 characters, no control characters",
        examples=["credit review 2026-Q4"],
    ),
]
NonNegativeWhole = Annotated[Whole, WithJsonSchema({**WHOLE_SCHEMA, "minimum": 0})]


class CustomerBody(Body):
    """A customer's credit position. ``currency`` and ``credit_limit`` are set; a field
    left out keeps what the ledger holds for an existing customer (``open_receivables``
    and ``days_past_due`` may have been moved by ledger events since; ``facts`` as a whole)
    and starts at 0 / none for a new one. ``open_orders`` and ``credit_balance`` belong to
    the ledger and are never set here."""

    currency: Currency
    credit_limit: NonNegativeMoney
    # Optional, an explicit null is refused (null_value) as everywhere in the API.
    open_receivables: NonNegativeMoney = Field(  # type: ignore[assignment]
        default=None,
        description="Set the open receivables (reconciliation with the AR ledger); left "
        "out: kept (new customer: 0)",
    )
    days_past_due: NonNegativeWhole = Field(  # type: ignore[assignment]
        default=None, description="Left out: kept (new customer: 0)"
    )
    facts: CustomerFacts = Field(  # type: ignore[assignment]
        default=None,
        description="The customer's facts as a whole: replaces the stored ones (a fact not "
        "named is removed). Required when replacing an existing customer (`{}` for none); "
        "left out when creating one: none",
    )
    reason: Reason = None  # type: ignore[assignment]


_PATCH_FACTS_SCHEMA: dict[str, Any] = {
    **_CUSTOMER_FACTS_SCHEMA,
    "description": "Customer facts to set, with or without `customer.`; `null` removes the "
    "fact (`{\"blacklisted\": false}` or `{\"blacklisted\": null}` lifts a blacklist); a "
    "fact not named is kept",
    "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
}
PatchFacts = Annotated[
    dict[str, Any], BeforeValidator(_customer_facts), WithJsonSchema(_PATCH_FACTS_SCHEMA)
]


class CustomerPatch(Body):
    """A JSON Merge Patch (RFC 7396) of a customer: only the fields it names change; a
    field left out keeps the stored value. ``null`` removes a fact; ``null`` on any other
    field is refused (they cannot be removed). The merged result is checked as a ``PUT``
    body is."""

    currency: Currency = None  # type: ignore[assignment]
    credit_limit: NonNegativeMoney = None  # type: ignore[assignment]
    open_receivables: NonNegativeMoney = Field(  # type: ignore[assignment]
        default=None, description="Set the open receivables (reconciliation with the AR ledger)"
    )
    days_past_due: NonNegativeWhole = None  # type: ignore[assignment]
    facts: PatchFacts = None  # type: ignore[assignment]
    reason: Reason = None  # type: ignore[assignment]


def customer_currency_message(policy: Any, currency: str) -> str:
    """Why a customer (PUT or CSV import) in ``currency`` is refused: the ledger holds every
    customer in the policy currency."""
    return (
        f"customers are kept in the policy currency {policy.currency} only, not {currency}: "
        f"send the credit limit and receivables in {policy.currency} (orders in another "
        "currency are converted with the rates of PUT /v1/fx-rates)"
    )


def customer_currency_check(policy: Any, currency: str) -> None:
    if currency != policy.currency:
        message = customer_currency_message(policy, currency)
        raise Problem(
            "invalid_request",
            message,
            errors=[{"path": "currency", "code": "currency_mismatch", "message": message}],
        )


# -- responses ------------------------------------------------------------------------------

_FACT_VALUES = {
    "type": "object",
    "description": "The customer facts as the ledger holds them (keyed without `customer.`), "
    "typed by the policy: money and decimals as exact strings",
    "additionalProperties": {"type": ["string", "integer", "boolean"]},
}


class CustomerPosition(BaseModel):
    """A customer's credit position as the ledger holds it, in the policy currency:
    exposure = open receivables + open approved orders; available = limit - exposure."""

    model_config = ConfigDict(extra="allow")

    customer_id: str
    currency: str
    credit_limit: DecimalText
    open_receivables: DecimalText
    open_orders: DecimalText = Field(description="Approved orders not yet invoiced")
    exposure: DecimalText
    available_credit: DecimalText = Field(description="Negative when over the limit")
    days_past_due: int
    credit_balance: DecimalText = Field(
        description="Paid beyond the receivables: owed to the customer, used up by the next "
        "invoice; never extra credit"
    )
    facts: Annotated[dict[str, Any], WithJsonSchema(_FACT_VALUES)]
    updated_at: DateTimeText


class ImportResult(BaseModel):
    """How many customers a CSV import created or updated."""

    model_config = ConfigDict(extra="allow")

    imported: int


class HistoryWho(BaseModel):
    """The API key that made the change (``role`` ``local``: the Python API, no key)."""

    model_config = ConfigDict(extra="allow")

    key_id: str | None = Field(description="The key's id, as `creditgate keys list` shows it")
    role: str
    name: str = Field(description="The key's name when it was created (may be empty)")


class HistoryChange(BaseModel):
    model_config = ConfigDict(extra="allow")

    old: Any = Field(description="Before (null: not set, e.g. a new customer or fact)")
    new: Any = Field(description="After (null: the fact was removed)")


class HistoryEntry(BaseModel):
    """One change of a customer's master data, hash-chained (chain `customer_history`)."""

    model_config = ConfigDict(extra="allow")

    seq: int = Field(description="Position in the chain (all customers)")
    customer_id: str
    version: int = Field(description="The customer's version after the change")
    source: str = Field(description="`put`, `patch` or `import`")
    at: DateTimeText = Field(description="When (the service clock)")
    who: HistoryWho
    reason: str | None
    changes: dict[str, HistoryChange] = Field(
        description="Per field (`credit_limit`, ..., `facts.<name>`): old and new value"
    )
    record_hash: str


class HistoryPage(BaseModel):
    """A customer's history, newest first."""

    model_config = ConfigDict(extra="allow")

    items: list[HistoryEntry]
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )
