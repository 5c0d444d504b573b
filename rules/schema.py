"""The shape of a policy file, as pydantic models (structure and field types only).

``rules.validate`` runs these models over the loaded YAML, maps pydantic's error locations
back to file positions, and then checks meaning (expressions, coverage, ordering). Field
names follow the credit vocabulary: ``reason_code``, ``deposit_pct`` (percent, 0-100),
``max_payment_term_days`` (days), ``auto_approve_up_to`` (money in the policy currency).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,79}$"
MAX_AMOUNT = Decimal(10) ** 15  # money in a policy, as in requests (engine/inputs.py)
MAX_NUMBER = Decimal(10) ** 15
CODE_PATTERN = r"^[A-Z][A-Z0-9_]{0,59}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InputSpec(_Strict):
    """A typed input fact. A field with a ``default`` is optional; without one it is
    required. ``min``/``max`` (inclusive) bound numeric inputs. ``sensitive`` marks personal
    data to be masked in exports."""

    type: str
    default: Any = None
    description: str | None = None
    min: Decimal | None = Field(default=None, gt=-MAX_NUMBER, lt=MAX_NUMBER)
    max: Decimal | None = Field(default=None, gt=-MAX_NUMBER, lt=MAX_NUMBER)
    sensitive: StrictBool = False


class DerivedSpec(_Strict):
    """A named value computed from inputs (and earlier derived values), in file order.
    ``if_zero_divisor`` is the value used when the expression divides by zero; it is
    required whenever the expression divides by a field."""

    expr: str
    description: str | None = None
    if_zero_divisor: Decimal | None = Field(default=None, gt=-MAX_NUMBER, lt=MAX_NUMBER)


class RuleSpec(_Strict):
    """Common to every rule: stable ``id``, human ``description``, ``reason_code`` and the
    condition ``when`` (an expression string, or ``true`` for always)."""

    id: str = Field(pattern=ID_PATTERN)
    description: str = Field(min_length=1)
    reason_code: str = Field(pattern=CODE_PATTERN)
    when: StrictStr | StrictBool  # 0 or "no" must not silently mean false


class DepositRuleSpec(RuleSpec):
    """Raises the deposit: ``deposit_pct`` (percent of the order, 0-100) or
    ``deposit_amount`` (a money expression such as ``exposure_after - customer.credit_limit``)."""

    deposit_pct: Decimal | None = Field(default=None, ge=0, le=100)
    deposit_amount: str | None = None


class TermRuleSpec(RuleSpec):
    """Caps the payment term at ``max_payment_term_days`` (0 = cash in advance)."""

    max_payment_term_days: StrictInt = Field(ge=0, le=3650)


class ReferralRuleSpec(RuleSpec):
    """Refers the order to a person; ``min_level`` optionally raises the approval level
    required (an escalation level name)."""

    min_level: str | None = None


class BinSpec(_Strict):
    """One band of a scorecard factor: numeric ``from`` (inclusive) / ``below`` (exclusive),
    or ``in`` (a list of enum/bool values); ``points`` awarded."""

    from_: Decimal | None = Field(default=None, alias="from", gt=-MAX_NUMBER, lt=MAX_NUMBER)
    below: Decimal | None = Field(default=None, gt=-MAX_NUMBER, lt=MAX_NUMBER)
    in_: list[str | bool | int] | None = Field(default=None, alias="in")
    points: StrictInt = Field(ge=-100_000, le=100_000)
    label: str | None = None


class FactorSpec(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    description: str = Field(min_length=1)
    reason_code: str = Field(pattern=CODE_PATTERN)
    field: str
    bins: list[BinSpec] = Field(min_length=1)


class ScorecardSpec(_Strict):
    """Additive scorecard: ``base_points`` plus one bin's points per factor. The
    ``max_reasons`` factors with the largest shortfall from their best bin give reason codes."""

    base_points: StrictInt = Field(default=0, ge=-1_000_000, le=1_000_000)
    max_reasons: StrictInt = Field(default=4, ge=0, le=20)
    factors: list[FactorSpec] = Field(min_length=1)


class TierSpec(_Strict):
    """Approval tier for scores ``min_score``..``max_score`` (inclusive integers)."""

    tier: str = Field(pattern=r"^[A-Za-z0-9_]{1,20}$")
    description: str | None = None
    min_score: StrictInt
    max_score: StrictInt
    max_payment_term_days: StrictInt = Field(ge=0, le=3650)
    deposit_pct: Decimal = Field(ge=0, le=100)
    auto_approve_up_to: Decimal = Field(ge=0, lt=MAX_AMOUNT)


class TermsSpec(_Strict):
    """Payment-term caps. ``over_cap`` says what happens when the requested term exceeds the
    cap: ``cap`` approves with the shorter term, ``refer`` sends the order to a person."""

    over_cap: Literal["cap", "refer"]
    over_cap_reason_code: str = Field(pattern=CODE_PATTERN)
    rules: list[TermRuleSpec] = []


class LevelSpec(_Strict):
    """An approval authority: may decide referred orders whose escalation basis is at most
    ``up_to`` (money; omitted on the last, highest level); ``sla_hours`` to decide."""

    level: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    description: str | None = None
    up_to: Decimal | None = Field(default=None, ge=0, lt=MAX_AMOUNT)
    sla_hours: StrictInt = Field(ge=1, le=24 * 90)


class EscalationSpec(_Strict):
    basis: str = "order.amount"
    levels: list[LevelSpec] = Field(min_length=1)


class PolicySpec(_Strict):
    policy: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    version: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    description: str
    inputs: dict[str, InputSpec] = Field(min_length=1)
    derived: dict[str, DerivedSpec] = {}
    knockouts: list[RuleSpec] = []
    scorecard: ScorecardSpec
    tiers: list[TierSpec] = Field(min_length=1)
    declines: list[RuleSpec] = []
    deposits: list[DepositRuleSpec] = []
    terms: TermsSpec
    referrals: list[ReferralRuleSpec] = []
    escalation: EscalationSpec

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
            return str(v)
        return v
