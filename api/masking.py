"""Masking of the inputs a policy marks ``sensitive`` (personal data) in log records
that leave the service (export, reads)."""

from __future__ import annotations

from typing import Any


def sensitive_paths(policy: Any) -> set[str]:
    return {path for path, spec in policy.inputs.items() if getattr(spec, "sensitive", False)}


MASK = "***"


def mask_record(row: dict[str, Any], sensitive: set[str]) -> dict[str, Any]:
    """A copy of a log record with the sensitive inputs masked (``"***"``) in the request
    snapshot and in the decision's trail (its inputs and every rule's reads)."""
    import copy

    if not sensitive:
        return row
    out = copy.deepcopy(row)
    request = out.get("request") or {}
    for path in sensitive:
        group, _, name = path.partition(".")
        if isinstance(request.get(group), dict) and name in request[group]:
            request[group][name] = MASK
    trail = (out.get("decision") or {}).get("trail") or {}
    inputs = trail.get("inputs")
    if isinstance(inputs, dict):
        for path in sensitive & set(inputs):
            inputs[path] = MASK
    for rule in trail.get("rules") or []:
        reads = rule.get("reads") if isinstance(rule, dict) else None
        if isinstance(reads, dict):
            for path in sensitive & set(reads):
                reads[path] = MASK
    return out
