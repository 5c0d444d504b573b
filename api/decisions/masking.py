"""Masking of the inputs a policy marks ``sensitive`` (personal data) in every read of the
decision log (one record, the list, the export, replay differences).

What is masked (``"***"``), for each sensitive input:

- the input itself: in the request snapshot and in the trail (``trail.inputs`` and every
  rule's ``reads``);
- every derived value computed from it, directly or through another derived value
  (``trail.derived`` and the rules' ``reads``);
- the decision's own fields that carry it or are computed from it (``DECISION_FIELDS``:
  e.g. ``credit_limit`` and ``available_credit`` when ``customer.credit_limit`` is
  sensitive), the escalation's ``basis_amount`` when its basis is masked, a
  ``deposit_amount`` computed by a deposit rule that reads a masked value, and the message
  of the over-cap term reason (it quotes the requested term);
- the log record's ``fx`` amounts when ``order.amount`` is sensitive.

The outcome, score, tier, reason codes and which rules matched stay visible: they are the
decision being audited, not the personal data."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.core.problems import Problem

MASK = "***"

# Decision fields computed from inputs: field -> the inputs it carries or is computed from.
DECISION_FIELDS: dict[str, tuple[str, ...]] = {
    "order_amount": ("order.amount",),
    "credit_limit": ("customer.credit_limit",),
    "exposure_after": ("customer.exposure", "order.amount"),
    "available_credit": ("customer.credit_limit", "customer.exposure", "order.amount"),
    "requested_payment_term_days": ("order.payment_term_days",),
    "approved_payment_term_days": ("order.payment_term_days",),
    "deposit_amount": ("order.amount",),
}
FX_AMOUNTS = ("original_amount", "converted_amount")
OVER_CAP_RULE = "terms.over_cap"


@dataclass(frozen=True)
class Masking:
    """What to mask: ``names`` (inputs and derived values, as the trail names them) and
    ``fields`` (top-level decision fields, ``escalation.basis_amount``, the
    ``terms.over_cap`` reason message, ``fx`` amounts)."""

    names: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.names or self.fields)

    def __or__(self, other: Masking) -> Masking:
        return Masking(self.names | other.names, self.fields | other.fields)


def sensitive_paths(policy: Any) -> set[str]:
    return {path for path, spec in policy.inputs.items() if getattr(spec, "sensitive", False)}


def masking_for(policy: Any) -> Masking:
    """The ``Masking`` of ``policy`` (a ``rules.policy.Policy``): its sensitive inputs and
    everything computed from them."""
    from rules.expr import fields_of

    names = sensitive_paths(policy)
    if not names:
        return Masking()
    for d in getattr(policy, "derived", ()) or ():  # in file order: later ones use earlier
        if names & set(fields_of(d.node)):
            names.add(d.name)
    fields = {f for f, sources in DECISION_FIELDS.items() if names & set(sources)}
    for rule in getattr(policy, "rules", ()) or ():
        if rule.stage == "deposit" and "deposit_amount" in rule.effect and names & set(rule.reads):
            fields.add("deposit_amount")
    if getattr(policy, "escalation_basis", None) in names:
        fields.add("escalation.basis_amount")
    if "order.payment_term_days" in names:
        fields.add(OVER_CAP_RULE)
    if "order.amount" in names:
        fields.add("fx")
    return Masking(frozenset(names), frozenset(fields))


def _hide(value: Any) -> str:
    return MASK


def mask_decision(
    decision: dict[str, Any], m: Masking, mark: Callable[[Any], Any] = _hide
) -> dict[str, Any]:
    """``decision`` (a Decision as JSON data) with what ``m`` masks replaced by
    ``mark(value)`` (default ``"***"``), in place; returns it."""
    for field in m.fields & set(DECISION_FIELDS):
        if decision.get(field) is not None:
            decision[field] = mark(decision[field])
    escalation = decision.get("escalation")
    if "escalation.basis_amount" in m.fields and isinstance(escalation, dict):
        if escalation.get("basis_amount") is not None:
            escalation["basis_amount"] = mark(escalation["basis_amount"])
    if OVER_CAP_RULE in m.fields:
        for reason in decision.get("reasons") or []:
            if isinstance(reason, dict) and reason.get("rule_id") == OVER_CAP_RULE:
                reason["message"] = mark(reason.get("message"))
    trail = decision.get("trail") or {}
    for part in ("inputs", "derived"):
        values = trail.get(part)
        if isinstance(values, dict):
            for name in m.names & set(values):
                values[name] = mark(values[name])
    for rule in trail.get("rules") or []:
        reads = rule.get("reads") if isinstance(rule, dict) else None
        if isinstance(reads, dict):
            for name in m.names & set(reads):
                reads[name] = mark(reads[name])
    return decision


def mask_record(row: dict[str, Any], m: Masking | set[str]) -> dict[str, Any]:
    """A copy of a decision-log record with what ``m`` masks replaced by ``"***"`` in the
    request snapshot, the decision (fields and trail) and the ``fx`` amounts. A plain set
    is taken as sensitive input paths only."""
    if isinstance(m, set):
        m = Masking(frozenset(m))
    if not m:
        return row
    out = copy.deepcopy(row)
    request = out.get("request") or {}
    for path in m.names:
        group, _, name = path.partition(".")
        if isinstance(request.get(group), dict) and name in request[group]:
            request[group][name] = MASK
    if isinstance(out.get("decision"), dict):
        mask_decision(out["decision"], m)
    fx = out.get("fx")
    if "fx" in m.fields and isinstance(fx, dict):
        for key in FX_AMOUNTS:
            if key in fx:
                fx[key] = MASK
    return out


class Hidden:
    """A masked value that still compares by its real value (replay differences are found
    on the real values, then shown as ``"***"``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hidden) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


def as_shown(value: Any) -> Any:
    """``value`` (JSON data) with every ``Hidden`` replaced by ``"***"``."""
    if isinstance(value, Hidden):
        return MASK
    if isinstance(value, dict):
        return {k: as_shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_shown(v) for v in value]
    return value


def masking_of(svc: Any) -> Callable[[dict[str, Any]], Masking]:
    """The ``Masking`` of a log record: the inputs marked sensitive by the policy in force or
    by the policy version that made the record, and everything computed from them."""
    current = masking_for(svc.policy)
    by_sha: dict[str, Masking] = {svc.policy.sha256: current}

    def of(row: dict[str, Any]) -> Masking:
        sha = row.get("policy_sha256") or ""
        if sha not in by_sha:
            try:
                by_sha[sha] = current | masking_for(svc.replayer.compiled(sha).policy)
            except Problem:  # source not stored: the current policy's marks
                by_sha[sha] = current
        return by_sha[sha]

    return of


def masker(svc: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Masks a log record for reading (one, list, export): see ``api.masking``."""
    of = masking_of(svc)
    return lambda row: mask_record(row, of(row))
