"""Scorecard total, approval tier and reason codes from the matched scorecard bins.

The scorecard is additive (base points + one bin's points per factor), the classic
points-based credit scorecard (Siddiqi, *Credit Risk Scorecards*, 2006). Reason codes follow
the US adverse-action convention (Regulation B, 12 CFR 1002.9): the factors that cost the
applicant most points relative to the best bin ("shortfall"), largest first, ties in policy
order, at most ``scorecard.max_reasons``.

``Scorecard`` is compiled once per policy (``CompiledPolicy.scorecard``): one
``FactorResult`` per bin and the stage-two values per tier are made at load.
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


def _shortfall(r: FactorResult) -> int:
    return -r.shortfall


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
        return {"score": self.score, **_tier_values(self.tier, minor_units)}


def _tier_values(tier: Tier, minor_units: int) -> dict[str, Any]:
    return {
        "tier": tier.tier,
        "tier_max_payment_term_days": tier.max_payment_term_days,
        "tier_deposit_pct": Decimal(tier.deposit_pct),
        "tier_auto_approve_up_to": Decimal(tier.auto_approve_up_to).quantize(
            Decimal(1).scaleb(-minor_units)
        ),
    }


class Scorecard:
    """The policy's scorecard and tiers, compiled once. Calling it with the matched rule ids
    totals the matched bins of every factor, picks the tier and ranks the reasons
    (module docstring); ``stage_two_values`` gives the values stage-two rules read.
    Immutable; safe to share between threads."""

    def __init__(self, policy: Policy):
        self._base = policy.base_points
        self._max_reasons = policy.max_reasons
        self._factors = tuple(
            (f, tuple((b, FactorResult(f, b, policy.rule(b).effect["points"])) for b in f.bin_ids))
            for f in policy.factors
        )
        self._bins = {  # bin id -> (factor index, its result)
            b: (i, result) for i, (_, bins) in enumerate(self._factors) for b, result in bins
        }
        self._tiers = policy.tiers
        self._tier_values = {t: _tier_values(t, policy.minor_units) for t in policy.tiers}

    def __call__(self, matched: set[str] | frozenset[str]) -> Scoring:
        """Raises ``ScorecardError`` if a factor has not exactly one matched bin or the score
        lies in no tier."""
        results: list[Any] = [None] * len(self._factors)
        bins = self._bins
        found = 0
        for rule_id in matched:
            hit = bins.get(rule_id)
            if hit is not None:
                i, result = hit
                found += 1
                results[i] = result
        if found != len(results) or None in results:  # not exactly one bin per factor
            for factor, factor_bins in self._factors:
                n = sum(b in matched for b, _ in factor_bins)
                if n != 1:
                    raise ScorecardError(f"factor {factor.id}: {n} bins matched, expected 1")
        score = self._base
        short = []
        for r in results:
            score += r.points
            if r.factor.best_points > r.points:
                short.append(r)
        for tier in self._tiers:
            if tier.min_score <= score <= tier.max_score:
                break
        else:
            raise ScorecardError(f"score {score} lies in no tier")
        short.sort(key=_shortfall)  # stable: ties stay in policy order
        return Scoring(score, tier, tuple(results), tuple(short[: self._max_reasons]))

    def stage_two_values(self, scoring: Scoring) -> dict[str, Any]:
        """``scoring.stage_two_values`` from values made at load: a new dict."""
        return {"score": scoring.score, **self._tier_values[scoring.tier]}


def score_and_tier(policy: Policy, matched: set[str] | frozenset[str]) -> Scoring:
    """One-off ``Scorecard(policy)(matched)`` (``engine.evaluate`` uses the compiled one)."""
    return Scorecard(policy)(matched)
