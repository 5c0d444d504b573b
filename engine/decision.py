"""The Decision: an immutable record of one credit decision and why it was made.

Money fields are ``Decimal`` in the policy currency (``currency``), serialised to JSON as
strings (``"12500.00"``) so no reader turns them into binary floats. Percentages
(``deposit_pct``) are 0-100. Terms are days.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer

Outcome = Literal["approve", "refer", "decline"]
M = TypeVar("M", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reason(_Frozen):
    """Why: stable ``code``, human ``message``, the ``rule_id`` and ``stage`` that produced it."""

    code: str
    message: str
    rule_id: str
    stage: str


class Escalation(_Frozen):
    """For a referred order: the approval ``level`` required, the ``chain`` of levels that may
    decide it (required level first, then every level above), the ``sla_hours`` of the
    required level and the ``basis`` amount that chose it."""

    level: str
    chain: list[str]
    sla_hours: int
    basis: str
    basis_amount: Decimal


class TrailEntry(NamedTuple):
    """One rule's evaluation: ``rule_id``, ``stage``, ``matched``, the values its condition
    read (``reads``: path → value, money and decimals as strings) and its ``effect``
    (``points +40``, ``deposit at least 30%``, ``payment term capped at 0 days``,
    ``refer``, ``decline``), or None when it did not match.

    An immutable named tuple rather than a pydantic model: a decision carries one per rule,
    and validating thousands of models per decision dominated evaluation time (see
    benchmarks/README.md). In JSON each entry is an object with these six keys."""

    rule_id: str
    stage: str
    description: str
    matched: bool
    reads: dict[str, Any]
    effect: str | None


def _rows_in(rows: list[Any]) -> tuple[TrailEntry, ...]:
    return tuple(r if isinstance(r, TrailEntry) else TrailEntry(**r) for r in rows)


def _rows_out(rows: tuple[TrailEntry, ...]) -> list[dict[str, Any]]:
    return [r._asdict() for r in rows]


TrailRows = Annotated[
    list[Any],
    AfterValidator(_rows_in),
    PlainSerializer(_rows_out, return_type=list[dict[str, Any]]),
]


class PolicyRef(_Frozen):
    id: str
    version: str
    sha256: str


class Trail(_Frozen):
    """The full audit trail: the validated ``inputs`` (defaults filled), the ``derived``
    values, any ``notes`` (e.g. zero-divisor fallbacks) and one entry per rule in policy
    order (``rules``)."""

    inputs: dict[str, Any]
    derived: dict[str, Any]
    notes: list[str]
    rules: TrailRows


class Decision(_Frozen):
    """Outcome and conditions for one order.

    - ``outcome``: approve / refer / decline (severity decline > refer > approve).
    - ``score`` (points), ``tier`` (approval tier name).
    - ``deposit_pct`` (0-100, two decimals) and ``deposit_amount`` (currency, rounded up to the
      minor unit); ``approved_payment_term_days``. None on a decline.
    - ``credit_limit``, ``exposure_after``, ``available_credit`` (after this order:
      limit - exposure_after; negative when over the limit).
    - ``reasons``: decline reasons, then referral reasons, then condition reasons (deposit,
      term), then scorecard reasons (largest shortfall first).
    - ``escalation``: required level and chain for a refer, else None.
    """

    decision_id: str
    outcome: Outcome
    score: int
    tier: str
    currency: str
    order_amount: Decimal
    deposit_pct: Decimal | None
    deposit_amount: Decimal | None
    requested_payment_term_days: int | None
    approved_payment_term_days: int | None
    credit_limit: Decimal | None
    exposure_after: Decimal | None
    available_credit: Decimal | None
    reasons: list[Reason]
    escalation: Escalation | None
    trail: Trail
    policy: PolicyRef
    engine_version: str
    evaluated_at: datetime
    order_id: str | None = None
    customer_id: str | None = None

    def comparable(self) -> dict[str, Any]:
        """The decision as JSON-ready data without ``decision_id`` and ``evaluated_at``: equal
        for the same request under the same policy (used by replay and determinism tests)."""
        return self.model_dump(mode="json", exclude={"decision_id", "evaluated_at"})


_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}
_set = object.__setattr__


def trusted(model: type[M], values: dict[str, Any]) -> M:
    """An instance of ``model`` (one of this module's models) from ``values`` (field name →
    value, in declaration order) that the engine made and typed itself, without
    validation: the instance ``model.model_construct(**values)`` makes when every field is
    given, at a fraction of its cost (pydantic's ``model_construct`` walks every field's
    aliases and defaults in Python, slower than validating a small model).

    The caller guarantees what validation would have checked: every value already has its
    field's type (``Decimal`` money, ``int`` days and points, ``str``, ``datetime``, nested
    model instances, ``TrailEntry`` tuples for ``Trail.rules``) and every list or dict is
    new (not shared with another decision). Frozen-ness, field order and serialisation are
    those of a validated instance (tests/engine/test_engine_path.py). ``values`` becomes the
    instance's ``__dict__`` (re-ordered into a new dict if given in another order). Raises
    ``TypeError`` if its keys are not exactly the model's fields."""
    fields = _FIELDS.get(model)
    if fields is None:
        fields = _FIELDS[model] = tuple(model.model_fields)
    if tuple(values) != fields:
        if set(values) != set(fields):
            raise TypeError(
                f"{model.__name__}: fields {sorted(set(fields) - set(values))} missing, "
                f"{sorted(set(values) - set(fields))} unknown"
            )
        values = {name: values[name] for name in fields}
    instance = model.__new__(model)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", set(fields))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance
