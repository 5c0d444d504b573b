"""A validated policy: what ``rules.validate`` produces and the compiler consumes.

All expressions are parsed and type-checked; every rule knows its stage, condition tree
and the fields it reads. Money amounts are ``Decimal`` in the policy currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rules.expr import Node, Type

# Stages, in evaluation and trail order. Stage 1 rules see inputs and derived values;
# stage 2 rules also see the score, the tier and the tier's parameters.
STAGES = ("knockout", "scorecard", "decline", "deposit", "term", "referral")
STAGE_ONE = ("knockout", "scorecard")

# Values known only after the scorecard, readable by deposits, terms and referrals.
STAGE_TWO_SYMBOLS = (
    "score",
    "tier",
    "tier_max_payment_term_days",
    "tier_deposit_pct",
    "tier_auto_approve_up_to",
)


@dataclass(frozen=True)
class InputDef:
    """A declared input: dotted ``path`` (``order.amount``), ``type``, ``default`` (used when
    ``optional``), inclusive ``min``/``max`` for numbers, ``sensitive`` (mask in exports)."""

    path: str
    type: Type
    optional: bool
    default: Any = None
    min: Decimal | None = None
    max: Decimal | None = None
    sensitive: bool = False
    description: str | None = None


@dataclass(frozen=True)
class DerivedDef:
    """A derived value: ``name``, checked expression ``node``, result ``type`` and the value
    used for a zero divisor (``if_zero_divisor``, None when the expression cannot divide by
    a field)."""

    name: str
    node: Node
    type: Type
    if_zero_divisor: Decimal | None
    description: str | None = None


@dataclass(frozen=True)
class Rule:
    """One rule of one stage. ``cond`` is the condition tree (None = always), ``reads`` the
    fields it reads, ``effect`` the stage-specific effect:

    - knockout, decline: ``{}`` (decline)
    - scorecard bin: ``{"factor": id, "points": int, "bin": label}``
    - deposit: ``{"deposit_pct": Decimal}`` or ``{"deposit_amount": Node}``
    - term: ``{"max_payment_term_days": int}``
    - referral: ``{"min_level": str | None}``
    """

    id: str
    stage: str
    description: str
    reason_code: str
    cond: Node | None
    reads: tuple[str, ...]
    effect: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Factor:
    """A scorecard factor: its bins are the rules ``bin_ids`` (exactly one matches)."""

    id: str
    description: str
    reason_code: str
    field: str
    bin_ids: tuple[str, ...]
    best_points: int
    worst_points: int


@dataclass(frozen=True)
class Tier:
    tier: str
    min_score: int
    max_score: int
    max_payment_term_days: int
    deposit_pct: Decimal
    auto_approve_up_to: Decimal
    description: str | None = None


@dataclass(frozen=True)
class Level:
    level: str
    up_to: Decimal | None
    sla_hours: int
    description: str | None = None


@dataclass(frozen=True)
class Policy:
    """A validated policy, ready to compile.

    ``sha256`` is the hash of the file bytes; ``minor_units`` the currency's decimals
    (ISO 4217 via Babel's CLDR data, e.g. EUR 2, JPY 0). ``rules`` holds every rule of every
    stage in policy order (stage order, then file order)."""

    id: str
    version: str
    currency: str
    minor_units: int
    description: str
    sha256: str
    file: str
    inputs: dict[str, InputDef]
    derived: tuple[DerivedDef, ...]
    rules: tuple[Rule, ...]
    base_points: int
    max_reasons: int
    factors: tuple[Factor, ...]
    min_score: int
    max_score: int
    tiers: tuple[Tier, ...]
    over_cap: str
    over_cap_reason_code: str
    escalation_basis: str
    levels: tuple[Level, ...]
    symbols: dict[str, Type]
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {r.id: r for r in self.rules})

    def rule(self, rule_id: str) -> Rule:
        """The rule with id ``rule_id`` (raises ``KeyError``)."""
        return self._by_id[rule_id]  # type: ignore[attr-defined]

    @property
    def rule_count(self) -> int:
        return len(self.rules)
