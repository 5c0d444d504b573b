"""Scorecard total, approval tier and reason codes from the matched scorecard bins.

The scorecard is additive (base points + one bin's points per factor), the classic
points-based credit scorecard (Siddiqi, *Credit Risk Scorecards*, 2006). Reason codes follow
the US adverse-action convention (Regulation B, 12 CFR 1002.9): the factors that cost the
applicant most points relative to the best bin ("shortfall"), largest first, ties in policy
order, at most ``scorecard.max_reasons``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rules.policy import Factor, Policy, Tier


class ScorecardError(RuntimeError):
    """A factor matched no bin or several bins (impossible for a validated policy; raised
    rather than guessing a score)."""


@dataclass(frozen=True)
class FactorResult:
    factor: Factor
    bin_id: str
    points: int

    @property
    def shortfall(self) -> int:
        return self.factor.best_points - self.points


@dataclass(frozen=True)
class Scoring:
    """``score`` (points), ``tier`` (the band containing it), per-factor results in policy
    order, and the factors chosen as reasons (largest shortfall first)."""

    score: int
    tier: Tier
    factors: tuple[FactorResult, ...]
    reasons: tuple[FactorResult, ...]

    def stage_two_values(self, minor_units: int) -> dict[str, Any]:
        """Values stage-two rules may read: score, tier and the tier's parameters (the
        auto-approve amount in the currency's minor unit, e.g. ``5000.00``)."""
        return {
            "score": self.score,
            "tier": self.tier.tier,
            "tier_max_payment_term_days": self.tier.max_payment_term_days,
            "tier_deposit_pct": Decimal(self.tier.deposit_pct),
            "tier_auto_approve_up_to": Decimal(self.tier.auto_approve_up_to).quantize(
                Decimal(1).scaleb(-minor_units)
            ),
        }


def score_and_tier(policy: Policy, matched: set[str] | frozenset[str]) -> Scoring:
    """Total the matched bins of every factor, pick the tier, rank the reasons.

    Raises ``ScorecardError`` if a factor has not exactly one matched bin or the score lies
    in no tier."""
    results = []
    for factor in policy.factors:
        hits = [b for b in factor.bin_ids if b in matched]
        if len(hits) != 1:
            raise ScorecardError(f"factor {factor.id}: {len(hits)} bins matched, expected 1")
        points = policy.rule(hits[0]).effect["points"]
        results.append(FactorResult(factor, hits[0], points))
    score = policy.base_points + sum(r.points for r in results)
    tier = next((t for t in policy.tiers if t.min_score <= score <= t.max_score), None)
    if tier is None:
        raise ScorecardError(f"score {score} lies in no tier")
    ranked = sorted((r for r in results if r.shortfall > 0), key=lambda r: -r.shortfall)
    return Scoring(score, tier, tuple(results), tuple(ranked[: policy.max_reasons]))
