"""Validate a credit request against the policy's declared inputs.

A request is JSON-shaped and nested by group::

    {"order": {"amount": "12500.00", "payment_term_days": 30},
     "customer": {"credit_limit": "50000", "exposure": "20000.50", "risk_class": "low", ...}}

Rules (documented in README "Requests"):

- Every declared input without a default must be present; optional inputs take their
  declared default. ``null`` counts as absent.
- Unknown fields are rejected (a typo must not silently fall back to a default).
  ``order.id``, ``customer.id`` (text identifiers, recorded, never read by rules) and
  ``order.currency`` (must equal the policy currency) are always allowed.
- money: a JSON number or a string such as ``"10000.10"``, at most the currency's minor
  unit of decimals (EUR: 2), never a binary float; magnitude below 10**15.
- int: a whole number; decimal: up to 6 decimal places, magnitude below 10**12;
  bool: ``true``/``false`` only; enum: one of the declared values; string: text.
- Declared ``min``/``max`` bounds are inclusive.

All problems are collected into one ``InputErrors`` (never first-only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from rules.expr import Type
from rules.policy import InputDef, Policy

MAX_MONEY = Decimal(10) ** 15
MAX_INT = 10**15
MAX_DECIMAL = Decimal(10) ** 12
DECIMAL_PLACES = 6
IDENTIFIERS = ("order.id", "customer.id")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class InputError:
    """One problem with a request: dotted ``path``, stable ``code``, human ``message``."""

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.code}: {self.message}"


class InputErrors(ValueError):
    """The request does not fit the policy's inputs; ``errors`` lists every problem."""

    def __init__(self, errors: list[InputError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def validate_request(policy: Policy, request: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Check ``request`` against ``policy.inputs``.

    Returns ``(values, identifiers)``: ``values`` maps every declared input path to a typed
    value (``Decimal`` for money/decimal, ``int``, ``bool``, ``str``), defaults filled in;
    ``identifiers`` holds ``order.id``/``customer.id`` when given. Raises ``InputErrors``."""
    errors: list[InputError] = []
    if not isinstance(request, dict):
        raise InputErrors(
            [
                InputError(
                    "",
                    "invalid_request",
                    "a request is a JSON object with groups such as 'order' and 'customer'",
                )
            ]
        )
    flat: dict[str, Any] = {}
    groups = {p.split(".")[0] for p in policy.inputs} | {"order", "customer"}
    for group, body in request.items():
        if group not in groups:
            errors.append(
                InputError(
                    group, "unknown_field", f"unknown group {group!r}; expected {sorted(groups)}"
                )
            )
            continue
        if not isinstance(body, dict):
            errors.append(InputError(group, "invalid_type", f"{group!r} must be an object"))
            continue
        for name, value in body.items():
            flat[f"{group}.{name}"] = value
    identifiers: dict[str, str] = {}
    for path in IDENTIFIERS:
        if path in flat:
            v = flat.pop(path)
            if v is not None and (not isinstance(v, str) or not 0 < len(v) <= 200):
                errors.append(
                    InputError(path, "invalid_type", "an identifier is text of 1 to 200 characters")
                )
            elif v is not None:
                identifiers[path] = v
    if "order.currency" in flat:
        cur = flat.pop("order.currency")
        if cur is not None and cur != policy.currency:
            errors.append(
                InputError(
                    "order.currency",
                    "currency_mismatch",
                    f"this policy decides in {policy.currency}, the order is in "
                    f"{cur!r}; convert it first",
                )
            )
    values: dict[str, Any] = {}
    for path, spec in policy.inputs.items():
        raw = flat.pop(path, None)
        if raw is None:
            if spec.optional:
                values[path] = spec.default
            else:
                errors.append(InputError(path, "missing", f"required {spec.type} field is missing"))
            continue
        try:
            values[path] = coerce(spec, raw, policy.minor_units)
        except InputErrors as exc:
            errors.extend(exc.errors)
    for path in flat:
        import difflib

        close = difflib.get_close_matches(path, list(policy.inputs), n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        errors.append(
            InputError(path, "unknown_field", f"the policy declares no input {path!r}{hint}")
        )
    if errors:
        raise InputErrors(errors)
    return values, identifiers


def coerce(spec: InputDef, raw: Any, minor_units: int) -> Any:
    """Convert one raw JSON value to the type of ``spec``; raises ``InputErrors``."""
    t: Type = spec.type
    path = spec.path

    def fail(code: str, msg: str) -> InputErrors:
        return InputErrors([InputError(path, code, msg)])

    if t.kind == "bool":
        if not isinstance(raw, bool):
            raise fail("invalid_type", f"expected true or false, got {raw!r}")
        return raw
    if t.kind in ("enum", "string"):
        if not isinstance(raw, str):
            raise fail("invalid_type", f"expected text, got {raw!r}")
        if t.kind == "enum" and raw not in t.values:
            raise fail("invalid_value", f"{raw!r} is not one of {list(t.values)}")
        if len(raw) > 1000:
            raise fail("too_long", "text longer than 1000 characters")
        return raw
    # numbers
    if isinstance(raw, bool):
        raise fail("invalid_type", f"expected a number, got {raw!r}")
    if isinstance(raw, float):
        raise fail(
            "inexact_number",
            "binary floating point is not exact: send the number as "
            'a string ("10000.10") or parse JSON with exact decimals',
        )
    if isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, str) and _NUMBER.match(raw.strip()) and len(raw) <= 40:
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:  # pragma: no cover - regex guards it
            raise fail("invalid_type", f"not a number: {raw!r}") from None
    else:
        raise fail("invalid_type", f"expected a number, got {raw!r}")
    if not value.is_finite():
        raise fail("invalid_value", "number is not finite")
    if t.kind == "money":
        limit, places, unit = MAX_MONEY, minor_units, "the currency's minor unit"
    elif t.kind == "int":
        limit, places, unit = Decimal(MAX_INT), 0, "whole numbers"
    else:
        limit, places, unit = MAX_DECIMAL, DECIMAL_PLACES, f"{DECIMAL_PLACES} decimal places"
    if abs(value) >= limit:
        raise fail("out_of_range", f"{value} is beyond the supported range (±{limit:,})")
    if value != round(value, places):
        raise fail("too_many_decimals", f"{value} has more decimals than allowed ({unit})")
    if spec.min is not None and value < spec.min:
        raise fail("below_min", f"{value} is below the minimum {spec.min}")
    if spec.max is not None and value > spec.max:
        raise fail("above_max", f"{value} is above the maximum {spec.max}")
    if t.kind == "int":
        return int(value)
    if t.kind == "money":
        return value.quantize(Decimal(1).scaleb(-minor_units))
    return value + 0  # turns -0 into 0; keeps the digits as sent
