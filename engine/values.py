"""Exact arithmetic for derived values, deposit amounts and comparison terms.

Computed in Python with ``Decimal`` at 60 significant digits (far beyond any validated
input), never in the engine. Rounding rules (README "Numbers and rounding"):

- derived money values: to the currency's minor unit, half-even (sums and differences of
  inputs are exact anyway);
- derived decimal values (ratios such as utilisation): *not rounded* — a quotient is
  carried at 60 significant digits, so a threshold such as ``utilisation > 2`` sees
  2.0000000001 as above 2 (the compiler encodes such values exactly for the engine). They
  are clamped to ±10**12 so that they always fit the engine (a ratio that large only arises
  from a near-zero divisor and compares the same way with every smaller policy literal);
- derived int values: exact;
- a division by zero takes the derived value's ``if_zero_divisor`` (stated in the policy).
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

from rules import expr as ex
from rules.policy import DerivedDef, Policy

CONTEXT = decimal.Context(
    prec=60,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
DECIMAL_PLACES = 6
DECIMAL_CLAMP = Decimal(10) ** 12


class DivideByZero(ArithmeticError):
    """An expression divided by a value that is zero for this request."""


def value(node: ex.Node, env: dict[str, Any]) -> Any:
    """Value of expression ``node`` with field values from ``env`` (path → value). Numbers
    are ``Decimal``/``int``; bool and text are returned as they are. Raises ``DivideByZero``."""
    if isinstance(node, ex.Lit):
        v = node.value
        return Decimal(v) if isinstance(v, int) and not isinstance(v, bool) else v
    if isinstance(node, ex.Field):
        v = env[node.path]
        return Decimal(v) if isinstance(v, int) and not isinstance(v, bool) else v
    if isinstance(node, ex.Neg):
        return CONTEXT.minus(value(node.operand, env))
    if isinstance(node, ex.Arith):
        a, b = value(node.left, env), value(node.right, env)
        if node.op == "+":
            return CONTEXT.add(a, b)
        if node.op == "-":
            return CONTEXT.subtract(a, b)
        if node.op == "*":
            return CONTEXT.multiply(a, b)
        if b == 0:
            raise DivideByZero(str(node))
        return CONTEXT.divide(a, b)
    raise TypeError(f"not a value expression: {node!r}")


def quantize(kind: str, v: Decimal, minor_units: int) -> Any:
    """Round a computed number to its type's precision (see module docstring)."""
    if kind == "money":
        return v.quantize(Decimal(1).scaleb(-minor_units), context=CONTEXT)
    if kind == "int":
        if v != v.to_integral_value():  # the type checker rules this out; never truncate
            raise ArithmeticError(f"whole-number value expected, got {v}")
        return int(v)
    v = CONTEXT.plus(v)  # at most 60 significant digits
    v = max(-DECIMAL_CLAMP, min(DECIMAL_CLAMP, v))
    if v == v.to_integral_value() and v.as_tuple().exponent < 0:
        v = v.quantize(Decimal(1))  # 2.000 -> 2: same value, shorter trail
    return CONTEXT.plus(v)  # also turns -0 into 0


def derive(policy: Policy, inputs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Compute every derived value in file order.

    Returns ``(derived, notes)``: ``derived`` maps name → value; ``notes`` records each
    zero-divisor fallback (``"utilisation: divisor is 0, used if_zero_divisor 999"``) for the
    trail."""
    env = dict(inputs)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for d in policy.derived:
        out[d.name] = env[d.name] = _one(d, env, policy.minor_units, notes)
    return out, notes


def _one(d: DerivedDef, env: dict[str, Any], minor_units: int, notes: list[str]) -> Any:
    try:
        v = value(d.node, env)
    except DivideByZero:
        notes.append(f"{d.name}: divisor is 0, used if_zero_divisor {d.if_zero_divisor}")
        v = d.if_zero_divisor
    return quantize(d.type.kind, v, minor_units)


def sign(left: ex.Node, right: ex.Node, env: dict[str, Any]) -> int:
    """Sign of ``left - right`` (-1, 0 or 1), exact."""
    diff = CONTEXT.subtract(value(left, env), value(right, env))
    return (diff > 0) - (diff < 0)
