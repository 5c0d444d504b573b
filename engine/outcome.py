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
"""

from __future__ import annotations

import decimal
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.decision import Decision, Escalation, PolicyRef, Reason, Trail, TrailEntry
from engine.scoring import Scoring
from engine.values import CONTEXT, value
from rules.policy import Policy, Rule


def jsonable(v: Any) -> Any:
    """Trail representation of a value: Decimal as its exact string, others unchanged."""
    return str(v) if isinstance(v, Decimal) else v


def _deposit(
    policy: Policy, env: dict[str, Any], scoring: Scoring, deposit_rules: list[Rule]
) -> tuple[Decimal, Decimal, list[Rule]]:
    """(deposit_pct, deposit_amount, the rules that raised it above the tier's deposit).
    Computed at 60 significant digits (``engine.values.CONTEXT``), rounded once at the end."""
    with decimal.localcontext(CONTEXT):
        return _deposit_exact(policy, env, scoring, deposit_rules)


def _deposit_exact(
    policy: Policy, env: dict[str, Any], scoring: Scoring, deposit_rules: list[Rule]
) -> tuple[Decimal, Decimal, list[Rule]]:
    amount = env["order.amount"]
    unit = Decimal(1).scaleb(-policy.minor_units)
    base = amount * scoring.tier.deposit_pct / 100
    candidates = [base]
    raising = []
    for r in deposit_rules:
        if "deposit_pct" in r.effect:
            c = amount * r.effect["deposit_pct"] / 100
        else:
            c = value(r.effect["deposit_amount"], env)
        candidates.append(c)
        if c > base:
            raising.append(r)
    dep = min(max(max(candidates), Decimal(0)), amount)
    dep = dep.quantize(unit, rounding=decimal.ROUND_CEILING)
    pct = (dep * 100 / amount).quantize(Decimal("0.01"), rounding=decimal.ROUND_HALF_EVEN)
    return pct, dep, raising


def _effect(rule: Rule, env: dict[str, Any], minor_units: int) -> str:
    e = rule.effect
    if rule.stage in ("knockout", "decline"):
        return "decline"
    if rule.stage == "scorecard":
        return f"points {e['points']:+d}"
    if rule.stage == "deposit":
        if "deposit_pct" in e:
            return f"deposit at least {e['deposit_pct']}%"
        amount = value(e["deposit_amount"], env)
        unit = Decimal(1).scaleb(-minor_units)
        return f"deposit at least {amount.quantize(unit, rounding=decimal.ROUND_CEILING)}"
    if rule.stage == "term":
        return f"payment term capped at {e['max_payment_term_days']} days"
    return "refer" + (f" (at least {e['min_level']})" if e.get("min_level") else "")


def _escalation(policy: Policy, env: dict[str, Any], referrals: list[Rule]) -> Escalation:
    basis = env[policy.escalation_basis]
    names = [lv.level for lv in policy.levels]
    idx = next(i for i, lv in enumerate(policy.levels) if lv.up_to is None or basis <= lv.up_to)
    for r in referrals:
        if r.effect.get("min_level"):
            idx = max(idx, names.index(r.effect["min_level"]))
    level = policy.levels[idx]
    return Escalation(
        level=level.level,
        chain=names[idx:],
        sla_hours=level.sla_hours,
        basis=policy.escalation_basis,
        basis_amount=basis,
    )


def build_decision(
    *,
    policy: Policy,
    inputs: dict[str, Any],
    derived: dict[str, Any],
    notes: list[str],
    env: dict[str, Any],
    matched: frozenset[str],
    scoring: Scoring,
    identifiers: dict[str, str],
    decision_id: str,
    evaluated_at: datetime,
    engine_version: str,
) -> Decision:
    """Assemble the immutable ``Decision`` (see module docstring for the rules applied)."""
    hit = [r for r in policy.rules if r.id in matched]
    by_stage: dict[str, list[Rule]] = {}
    for r in hit:
        by_stage.setdefault(r.stage, []).append(r)
    knockouts = by_stage.get("knockout", []) + by_stage.get("decline", [])
    referrals = by_stage.get("referral", [])
    deposits = by_stage.get("deposit", [])
    caps = by_stage.get("term", [])

    reasons: list[Reason] = [
        Reason(code=r.reason_code, message=r.description, rule_id=r.id, stage=r.stage)
        for r in knockouts + referrals
    ]
    cap = min(
        [scoring.tier.max_payment_term_days] + [r.effect["max_payment_term_days"] for r in caps]
    )
    requested = env.get("order.payment_term_days")
    approved_term = cap if requested is None else min(requested, cap)
    term_referral = False
    if requested is not None and requested > cap:
        msg = f"requested payment term {requested} days exceeds the cap of {cap} days"
        if policy.over_cap == "refer":
            term_referral = True
            reasons.append(
                Reason(
                    code=policy.over_cap_reason_code,
                    message=msg,
                    rule_id="terms.over_cap",
                    stage="term",
                )
            )
    deposit_pct, deposit_amount, raising = _deposit(policy, env, scoring, deposits)
    # Condition reasons name only rules that changed the conditions: a deposit rule that
    # raised the deposit above the tier's, a term rule whose cap is below the request.
    binding_caps = [
        r for r in caps if requested is None or r.effect["max_payment_term_days"] < requested
    ]
    condition_reasons = [
        Reason(code=r.reason_code, message=r.description, rule_id=r.id, stage=r.stage)
        for r in raising + binding_caps
    ]
    if requested is not None and requested > cap and policy.over_cap == "cap":
        condition_reasons.append(
            Reason(
                code=policy.over_cap_reason_code,
                message=f"payment term capped from {requested} to {cap} days",
                rule_id="terms.over_cap",
                stage="term",
            )
        )
    if not knockouts:  # a decline has no conditions to explain
        reasons += condition_reasons
    for fr in scoring.reasons:
        rule = policy.rule(fr.bin_id)
        reasons.append(
            Reason(
                code=fr.factor.reason_code,
                message=f"{rule.description} ({fr.points} of {fr.factor.best_points} points)",
                rule_id=fr.bin_id,
                stage="scorecard",
            )
        )

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
    amount = inputs["order.amount"]
    exposure_after = exposure + amount if exposure is not None else None
    available = limit - exposure_after if limit is not None and exposure_after is not None else None

    shown = {k: jsonable(v) for k, v in env.items()}
    trail = Trail(
        inputs={k: shown[k] for k in inputs},
        derived={k: shown[k] for k in derived},
        notes=list(notes),
        rules=[
            TrailEntry(
                r.id,
                r.stage,
                r.description,
                r.id in matched,
                {p: shown[p] for p in r.reads},
                _effect(r, env, policy.minor_units) if r.id in matched else None,
            )
            for r in policy.rules
        ],
    )
    return Decision(
        decision_id=decision_id,
        outcome=outcome,
        score=scoring.score,
        tier=scoring.tier.tier,
        currency=policy.currency,
        order_amount=amount,
        deposit_pct=deposit_pct,
        deposit_amount=deposit_amount,
        requested_payment_term_days=requested,
        approved_payment_term_days=approved_term,
        credit_limit=limit,
        exposure_after=exposure_after,
        available_credit=available,
        reasons=reasons,
        escalation=_escalation(policy, env, referrals) if outcome == "refer" else None,
        trail=trail,
        policy=PolicyRef(id=policy.id, version=policy.version, sha256=policy.sha256),
        engine_version=engine_version,
        evaluated_at=evaluated_at,
        order_id=identifiers.get("order.id"),
        customer_id=identifiers.get("customer.id"),
    )
