"""From matched rules to the Decision: outcome, conditions, reasons, escalation, trail.

Hit policies (README "Decision logic"):

- knock-outs and decline rules: any match declines (collect: every match is a reason);
- scorecard: exactly one bin per factor (unique), points summed;
- tiers: the one band containing the score (unique);
- deposits: the largest of the tier's ``deposit_pct`` and every matching rule (max);
  ``deposit_amount = max(order.amount * pct / 100, amounts from deposit_amount rules)``,
  at most the order amount, rounded *up* to the currency's minor unit (the seller's side);
  ``deposit_pct`` reported = deposit_amount / order.amount * 100, half-even to 2 places;
- payment terms: the shortest of the tier's cap and every matching rule's cap (min); a
  requested term above it is capped or referred as the policy's ``terms.over_cap`` says;
- referrals: any match refers (collect);
- outcome severity: decline > refer > approve.
- escalation: the lowest level whose ``up_to`` covers the basis amount, raised to any
  ``min_level`` of a matched referral; the chain is that level and every level above.

What does not depend on the request is prepared once per policy by ``DecisionBuilder``
(``CompiledPolicy.outcome``): per rule a trail template (id, stage, description, the
fields its condition reads, its effect text, or for a ``deposit_amount`` rule the closure
computing the amount) and its ``Reason``; per scorecard bin its reason; the policy
reference; the escalation levels and chains. Per decision only the values are filled in,
and the immutable models are assembled with ``engine.decision.trusted``: the engine made
and typed every value itself, so nothing is validated again.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from engine.decision import (
    Decision,
    Escalation,
    PolicyRef,
    Reason,
    Trail,
    TrailEntry,
    trusted,
)
from engine.scoring import Scoring
from engine.values import CONTEXT, compile_value
from rules.policy import Policy, Rule

_new_row = tuple.__new__
_multiply, _divide = CONTEXT.multiply, CONTEXT.divide
_CENT = Decimal("0.01")
_ZERO = Decimal(0)


class RuleTemplate(NamedTuple):
    """One rule's part of every decision: its trail entry without the values, and its
    reason. ``reads`` makes the entry's ``reads`` dict (the fields the condition reads, in
    order, with their trail values) from the trail values of the whole env. ``effect`` is
    the effect text when it matches (``points +40``, ``deposit at least 30%``, ``payment
    term capped at 0 days``, ``refer (at least credit_manager)``, ``decline``), or None for
    a ``deposit_amount`` rule, whose amount ``amount`` computes from the evaluation env (a
    ``Decimal`` in the policy currency)."""

    rule: Rule
    id: str
    stage: str
    description: str
    reads: Callable[[dict[str, Any]], dict[str, Any]]
    effect: str | None
    amount: Callable[[dict[str, Any]], Decimal] | None
    reason: Reason


def _reader(paths: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A closure making ``{path: shown[path] for path in paths}`` (a new dict per call)."""
    if len(paths) == 1:
        (only,) = paths
        return lambda shown: {only: shown[only]}
    if len(paths) == 2:
        first, second = paths
        return lambda shown: {first: shown[first], second: shown[second]}
    return lambda shown: {p: shown[p] for p in paths}


def _effect_text(rule: Rule) -> str | None:
    e = rule.effect
    if rule.stage in ("knockout", "decline"):
        return "decline"
    if rule.stage == "scorecard":
        return f"points {e['points']:+d}"
    if rule.stage == "deposit":
        return f"deposit at least {e['deposit_pct']}%" if "deposit_pct" in e else None
    if rule.stage == "term":
        return f"payment term capped at {e['max_payment_term_days']} days"
    return "refer" + (f" (at least {e['min_level']})" if e.get("min_level") else "")


def _template(rule: Rule) -> RuleTemplate:
    amount = rule.effect.get("deposit_amount") if rule.stage == "deposit" else None
    reason = Reason(code=rule.reason_code, message=rule.description, rule_id=rule.id,
                    stage=rule.stage)
    return RuleTemplate(rule, rule.id, rule.stage, rule.description, _reader(tuple(rule.reads)),
                        _effect_text(rule), None if amount is None else compile_value(amount),
                        reason)


class DecisionBuilder:
    """Assembles the ``Decision`` for one evaluation of one policy (module docstring).
    Built once per policy; immutable; safe to share between threads."""

    def __init__(self, policy: Policy):
        self.currency = policy.currency
        self.unit = Decimal(1).scaleb(-policy.minor_units)
        self.rules = tuple(_template(r) for r in policy.rules)
        self.index = {t.id: i for i, t in enumerate(self.rules)}
        self.rows = tuple((t.id, t.stage, t.description, t.reads, t.effect) for t in self.rules)
        self.bin_reasons = {
            bin_id: Reason(
                code=f.reason_code,
                message=f"{policy.rule(bin_id).description} "
                f"({policy.rule(bin_id).effect['points']} of {f.best_points} points)",
                rule_id=bin_id,
                stage="scorecard",
            )
            for f in policy.factors
            for bin_id in f.bin_ids
        }
        self.policy_ref = PolicyRef(id=policy.id, version=policy.version, sha256=policy.sha256)
        self.over_cap = policy.over_cap
        self.over_cap_reason_code = policy.over_cap_reason_code
        self.basis = policy.escalation_basis
        self.levels = policy.levels
        names = [lv.level for lv in policy.levels]
        self.level_index: dict[str, int] = {}
        for i, name in enumerate(names):
            self.level_index.setdefault(name, i)
        self.chains = tuple(tuple(names[i:]) for i in range(len(names)))

    def build(
        self,
        *,
        inputs: dict[str, Any],
        derived: dict[str, Any],
        notes: list[str],
        env: dict[str, Any],
        matched: set[str] | frozenset[str],
        scoring: Scoring,
        identifiers: dict[str, str],
        decision_id: str,
        evaluated_at: datetime,
        engine_version: str,
    ) -> Decision:
        """The immutable ``Decision`` (module docstring for the rules applied).

        ``env``: every input, derived and stage-two value (path → typed value); ``matched``:
        the ids of the rules that matched; ``decision_id`` and ``evaluated_at`` come from the
        caller and are validated unless they are exactly a ``str`` and a ``datetime``."""
        knockouts: list[RuleTemplate] = []
        referrals: list[RuleTemplate] = []
        deposits: list[tuple[RuleTemplate, Decimal]] = []
        caps: list[RuleTemplate] = []
        computed: dict[str, str] = {}  # effect texts of matched deposit_amount rules
        rules, index = self.rules, self.index
        for t in [rules[i] for i in sorted([index[r] for r in matched if r in index])]:
            stage = t.stage
            if stage == "knockout" or stage == "decline":
                knockouts.append(t)
            elif stage == "referral":
                referrals.append(t)
            elif stage == "term":
                caps.append(t)
            elif stage == "deposit":
                if t.amount is None:
                    amount = _divide(_multiply(env["order.amount"], t.rule.effect["deposit_pct"]),
                                     100)
                else:
                    amount = t.amount(env)
                    rounded = amount.quantize(self.unit, rounding=decimal.ROUND_CEILING)
                    computed[t.id] = f"deposit at least {rounded}"
                deposits.append((t, amount))
        shown = {k: str(v) if isinstance(v, Decimal) else v for k, v in env.items()}
        rows = [
            _new_row(TrailEntry, (rule_id, stage, description, True, reads(shown),
                                  computed.get(rule_id, effect)))
            if rule_id in matched
            else _new_row(TrailEntry, (rule_id, stage, description, False, reads(shown), None))
            for rule_id, stage, description, reads, effect in self.rows
        ]

        reasons = [t.reason for t in knockouts]
        reasons += [t.reason for t in referrals]
        tier = scoring.tier
        cap = min([tier.max_payment_term_days]
                  + [t.rule.effect["max_payment_term_days"] for t in caps])
        requested = env.get("order.payment_term_days")
        approved_term = cap if requested is None else min(requested, cap)
        over_cap = requested is not None and requested > cap
        term_referral = over_cap and self.over_cap == "refer"
        if term_referral:
            msg = f"requested payment term {requested} days exceeds the cap of {cap} days"
            reasons.append(self._term_reason(msg))
        amount = inputs["order.amount"]
        deposit_pct, deposit_amount, raising = self._deposit(amount, tier.deposit_pct, deposits)
        if not knockouts:  # a decline has no conditions to explain
            # only rules that changed the conditions: a deposit rule that raised the deposit
            # above the tier's, a term rule whose cap is below the request
            reasons += [t.reason for t in raising]
            reasons += [t.reason for t in caps if requested is None
                        or t.rule.effect["max_payment_term_days"] < requested]
            if over_cap and self.over_cap == "cap":
                reasons.append(
                    self._term_reason(f"payment term capped from {requested} to {cap} days"))
        bin_reasons = self.bin_reasons
        reasons += [bin_reasons[fr.bin_id] for fr in scoring.reasons]

        if knockouts:
            outcome = "decline"
        elif referrals or term_referral:
            outcome = "refer"
        else:
            outcome = "approve"
        if outcome == "decline":
            deposit_pct = deposit_amount = approved_term = None

        limit = inputs.get("customer.credit_limit")
        exposure = inputs.get("customer.exposure")
        exposure_after = exposure + amount if exposure is not None else None
        available = (
            limit - exposure_after if limit is not None and exposure_after is not None else None
        )
        trail = trusted(Trail, {
            "inputs": {k: shown[k] for k in inputs},
            "derived": {k: shown[k] for k in derived},
            "notes": list(notes),
            "rules": tuple(rows),
        })
        fields = {
            "decision_id": decision_id,
            "outcome": outcome,
            "score": scoring.score,
            "tier": tier.tier,
            "currency": self.currency,
            "order_amount": amount,
            "deposit_pct": deposit_pct,
            "deposit_amount": deposit_amount,
            "requested_payment_term_days": requested,
            "approved_payment_term_days": approved_term,
            "credit_limit": limit,
            "exposure_after": exposure_after,
            "available_credit": available,
            "reasons": reasons,
            "escalation": self._escalation(env, referrals) if outcome == "refer" else None,
            "trail": trail,
            "policy": self.policy_ref,
            "engine_version": engine_version,
            "evaluated_at": evaluated_at,
            "order_id": identifiers.get("order.id"),
            "customer_id": identifiers.get("customer.id"),
        }
        if type(decision_id) is not str or type(evaluated_at) is not datetime:
            return Decision(**fields)  # the caller's id or clock: validate them
        return trusted(Decision, fields)

    def _term_reason(self, message: str) -> Reason:
        return trusted(Reason, {"code": self.over_cap_reason_code, "message": message,
                                "rule_id": "terms.over_cap", "stage": "term"})

    def _deposit(
        self, amount: Decimal, tier_pct: Decimal, deposits: list[tuple[RuleTemplate, Decimal]]
    ) -> tuple[Decimal, Decimal, list[RuleTemplate]]:
        """(deposit_pct, deposit_amount, the rules that raised it above the tier's deposit),
        from the order ``amount``, the tier's percentage and each matched deposit rule's
        unrounded amount. Computed at 60 significant digits (``engine.values.CONTEXT``),
        rounded once at the end."""
        base = _divide(_multiply(amount, tier_pct), 100)
        highest = base
        raising = []
        for t, candidate in deposits:
            if candidate > highest:
                highest = candidate
            if candidate > base:
                raising.append(t)
        dep = min(max(highest, _ZERO), amount)
        dep = dep.quantize(self.unit, rounding=decimal.ROUND_CEILING, context=CONTEXT)
        pct = _divide(_multiply(dep, 100), amount).quantize(
            _CENT, rounding=decimal.ROUND_HALF_EVEN, context=CONTEXT)
        return pct, dep, raising

    def _escalation(self, env: dict[str, Any], referrals: list[RuleTemplate]) -> Escalation:
        basis = env[self.basis]
        idx = next(i for i, lv in enumerate(self.levels) if lv.up_to is None or basis <= lv.up_to)
        for t in referrals:
            min_level = t.rule.effect.get("min_level")
            if min_level:
                idx = max(idx, self.level_index[min_level])
        level = self.levels[idx]
        return trusted(Escalation, {"level": level.level, "chain": list(self.chains[idx]),
                                    "sla_hours": level.sla_hours, "basis": self.basis,
                                    "basis_amount": basis})
