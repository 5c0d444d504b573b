"""Request models of deciding an order (``POST /v1/decisions``) and the checks that need the
policy; the response models of the decisions' routes (for the OpenAPI document: the routes
answer the stored JSON as it is, see ``api.decisions.routes``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from api.core.bodies import Body, Currency, CustomerId, Identifier, IsoDate, Money, Whole
from api.core.problems import Problem
from api.core.schemas import DateText, DateTimeText, DecimalText, Masked, Sha256Hex

_RESERVED_FACTS = {
    "order.id": "order_id",
    "order.amount": "amount",
    "order.currency": "currency",
    "order.payment_term_days": "payment_term_days",
    "customer.id": "customer_id",
}
#: the most facts an order may carry (checked before anything else is done with them)
MAX_FACTS = 1000
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
    if len(value) > MAX_FACTS:
        raise PydanticCustomError(
            "too_many",
            "facts has {n} entries; at most {most} (a policy's inputs, not a data dump)",
            {"n": len(value), "most": MAX_FACTS},
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


_ORDER_FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": MAX_FACTS,
    "description": "Other policy inputs for this order by input name, e.g. "
    '{"customer.risk_class": "low"} (request values win over the ledger; a value that '
    "contradicts the ledger is refused). Which names and values a policy accepts is the "
    "policy's: `GET /v1/policy`",
    "propertyNames": {
        "pattern": _FACT_KEY.pattern,
        "not": {"enum": sorted(_RESERVED_FACTS)},
    },
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
OrderFacts = Annotated[
    dict[str, Any], BeforeValidator(_order_facts), WithJsonSchema(_ORDER_FACTS_SCHEMA)
]


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
    facts: OrderFacts = Field(default_factory=dict)


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


# -- responses ------------------------------------------------------------------------------


class _Answer(BaseModel):
    """A response model: the fields the service writes; any field a later version adds is
    passed through (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")


Outcome = Literal["approve", "refer", "decline"]
Kind = Literal["new", "repeat", "amended"]


class Reason(_Answer):
    """Why: a stable ``code``, a human ``message``, the ``rule_id`` and ``stage`` behind it."""

    code: str
    message: str
    rule_id: str
    stage: str


class TrailRule(_Answer):
    """One rule's evaluation: whether it ``matched``, the values its condition read
    (``reads``: input or derived name → value; money and decimals as strings) and its
    ``effect`` (``points +40``, ``deposit at least 30%``, ``refer``, ...; null when it did not
    match)."""

    rule_id: str
    stage: str
    description: str
    matched: bool
    reads: dict[str, Any]
    effect: str | None


class Trail(_Answer):
    """The audit trail: the validated ``inputs`` (defaults filled), the ``derived`` values,
    ``notes`` and one entry per rule in policy order. In the reads of the log, sensitive
    inputs and what is computed from them show ``"***"``."""

    inputs: dict[str, Any]
    derived: dict[str, Any]
    notes: list[str]
    rules: list[TrailRule]


class PolicyRef(_Answer):
    """The policy that made the decision: its ``id``, ``version`` and the sha256 of its text."""

    id: str
    version: str
    sha256: Sha256Hex


class Escalation(_Answer):
    """For a referred order: the approval ``level`` required, the ``chain`` of levels that
    may decide it, the level's ``sla_hours`` and the ``basis`` amount that chose it."""

    level: str
    chain: list[str]
    sla_hours: int
    basis: str
    basis_amount: DecimalText


class MaskedEscalation(Escalation):
    """``Escalation`` as the reads of the log show it: ``basis_amount`` may be masked."""

    basis_amount: DecimalText | Masked  # type: ignore[assignment]


class _DecisionFields(_Answer):
    decision_id: str = Field(examples=["a087e2fa-125c-412c-ba42-1cd0e6cfdfcb"])
    outcome: Outcome
    score: int
    tier: str
    currency: str = Field(description="The policy currency (ISO 4217) of every amount")
    deposit_pct: DecimalText | None = Field(
        description="Deposit as a percent of the order (0-100, two decimals); null on a decline"
    )
    reasons: list[Reason]
    trail: Trail
    policy: PolicyRef
    engine_version: str
    evaluated_at: DateTimeText
    order_id: str | None
    customer_id: str | None


class Decision(_DecisionFields):
    """A credit decision (``engine.decision.Decision`` as JSON): outcome, conditions,
    reasons, escalation and the trail. Money as exact decimal strings in ``currency``."""

    order_amount: DecimalText
    deposit_amount: DecimalText | None
    requested_payment_term_days: int | None
    approved_payment_term_days: int | None
    credit_limit: DecimalText | None
    exposure_after: DecimalText | None
    available_credit: DecimalText | None = Field(
        description="credit_limit - exposure_after; negative when over the limit"
    )
    escalation: Escalation | None


class MaskedDecision(_DecisionFields):
    """A ``Decision`` as the reads of the log show it: the fields that carry or are computed
    from a sensitive input may be ``"***"`` (README, "Masking")."""

    order_amount: DecimalText | Masked
    deposit_amount: DecimalText | Masked | None
    requested_payment_term_days: int | Masked | None
    approved_payment_term_days: int | Masked | None
    credit_limit: DecimalText | Masked | None
    exposure_after: DecimalText | Masked | None
    available_credit: DecimalText | Masked | None
    escalation: MaskedEscalation | None


class RateCandidate(_Answer):
    rate: DecimalText
    as_of: DateText


class _FxFields(_Answer):
    original_currency: str
    currency: str = Field(description="The policy currency the amount was converted into")
    rate: DecimalText = Field(description="Units of `currency` for one `original_currency`")
    rate_as_of: DateText
    order_date: DateText
    rounding: str = Field(examples=["half-even to 0.01"])
    candidates: list[RateCandidate] = Field(
        default=None,  # type: ignore[assignment]
        description="Sent when a later rate was loaded since the order date: both rates; "
        "the higher one is used",
    )


class FxConversion(_FxFields):
    """The conversion of an order in another currency than the policy's."""

    original_amount: DecimalText = Field(description="The amount as sent, in its currency")
    converted_amount: DecimalText = Field(description="In the policy currency: what was decided")


class MaskedFxConversion(_FxFields):
    """``FxConversion`` as the reads of the log show it (amounts masked when ``order.amount``
    is sensitive)."""

    original_amount: DecimalText | Masked
    converted_amount: DecimalText | Masked


class DecisionAnswer(Decision):
    """The answer to ``POST /v1/decisions``: the decision as recorded (unmasked), with
    ``kind`` and, for an order in another currency, ``fx``."""

    kind: Kind = Field(
        description="new; repeat (the same order again: the stored decision, nothing reserved "
        "twice); amended (changed content under the same order id: re-decided)"
    )
    fx: FxConversion = Field(
        default=None,  # type: ignore[assignment]
        description="Only for an order in another currency than the policy's",
    )


_REQUEST_SNAPSHOT = {
    "type": "object",
    "description": "The input snapshot the engine decided on, by input group "
    '({"order": {...}, "customer": {...}}): the order as received (converted into the policy '
    'currency) and the customer facts from the ledger; sensitive inputs show "***"',
    "additionalProperties": {"type": "object"},
}


class DecisionRecord(_Answer):
    """A record of the decision log as the reads show it (``GET /v1/decisions/{id}``, the
    list, the export): sensitive inputs masked."""

    seq: int = Field(description="Position in the hash chain (1, 2, ... without gaps)")
    decision_id: str
    order_id: str
    customer_id: str
    outcome: Outcome
    kind: Kind
    policy_id: str
    policy_version: str
    policy_sha256: Sha256Hex
    request: Annotated[dict[str, Any], WithJsonSchema(_REQUEST_SNAPSHOT)]
    decision: MaskedDecision
    rules_matched: str = Field(description="The ids of the matched rules, space-delimited")
    content_hash: Sha256Hex = Field(description="sha256 of the order as sent (idempotency)")
    caller: str = Field(description="role:key id of the API key that asked")
    created_at: DateTimeText
    record_hash: Sha256Hex
    prev_hash: Sha256Hex
    business_unit: str
    fx: MaskedFxConversion = Field(
        default=None,  # type: ignore[assignment]
        description="Only for an order in another currency than the policy's",
    )
    clock: str = Field(
        default=None,  # type: ignore[assignment]
        description="Only for a record written under a moved clock (tests): how it was moved",
    )


class DecisionPage(_Answer):
    """One page of the decision log, newest first."""

    items: list[DecisionRecord]
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class ReplayDifference(_Answer):
    path: str = Field(description="Where the decisions differ, e.g. `outcome`, `trail.rules[3]`")
    stored: Any
    replayed: Any


class ReplayResult(_Answer):
    """A recorded decision re-evaluated under the policy text that made it."""

    decision_id: str
    identical: bool
    policy: PolicyRef
    stored_outcome: Outcome
    replayed_outcome: Outcome
    differences: list[ReplayDifference] = Field(
        description='Every leaf that differs; masked values are shown as "***"'
    )
