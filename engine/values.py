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

Expressions are compiled once per policy into closures over the checked expression tree
(``compile_value``, ``compile_sign``, ``compile_same``, ``Derivation``); nothing is ever
passed to ``eval``/``exec``. A closure takes ``env`` (field path → value: inputs, derived
values, and in stage two the score and tier values) and raises ``KeyError`` for a field
``env`` lacks, ``DivideByZero`` for a zero divisor.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rules import expr as ex
from rules.policy import Policy

CONTEXT = decimal.Context(
    prec=60,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
DECIMAL_PLACES = 6
DECIMAL_CLAMP = Decimal(10) ** 12

Env = dict[str, Any]
Getter = Callable[[Env], Any]
_ARITH = {"+": CONTEXT.add, "-": CONTEXT.subtract, "*": CONTEXT.multiply}


class DivideByZero(ArithmeticError):
    """An expression divided by a value that is zero for this request."""


def compile_value(node: ex.Node) -> Getter:
    """A closure computing the value of expression ``node`` from ``env``.

    Numbers come out as ``Decimal`` (an ``int`` literal or field value is converted, bools
    are not numbers); bool and text values are returned as they are. ``+ - * /`` and unary
    minus use ``CONTEXT`` (60 digits, half-even); ``/`` by zero raises ``DivideByZero``.
    Raises ``TypeError`` (at compile time) for a condition node."""
    if isinstance(node, ex.Lit):
        v = node.value
        constant = Decimal(v) if isinstance(v, int) and not isinstance(v, bool) else v
        return lambda env: constant
    if isinstance(node, ex.Field):
        path = node.path

        def field(env: Env) -> Any:
            v = env[path]
            return Decimal(v) if isinstance(v, int) and not isinstance(v, bool) else v

        return field
    if isinstance(node, ex.Neg):
        operand, minus = compile_value(node.operand), CONTEXT.minus
        return lambda env: minus(operand(env))
    if isinstance(node, ex.Arith):
        return _arith(node)
    raise TypeError(f"not a value expression: {node!r}")


def _arith(node: ex.Arith) -> Getter:
    """``compile_value`` of ``left op right``; two fields (the usual derived value, such as
    ``exposure_after / customer.credit_limit``) read ``env`` directly."""
    op = _ARITH.get(node.op)
    if op is None:
        divide, text = CONTEXT.divide, str(node)

        def op(a: Decimal, b: Decimal) -> Decimal:
            if b == 0:
                raise DivideByZero(text)
            return divide(a, b)

    if isinstance(node.left, ex.Field) and isinstance(node.right, ex.Field):
        left_path, right_path = node.left.path, node.right.path

        def fields(env: Env) -> Decimal:
            a, b = env[left_path], env[right_path]
            if isinstance(a, int) and not isinstance(a, bool):
                a = Decimal(a)
            if isinstance(b, int) and not isinstance(b, bool):
                b = Decimal(b)
            return op(a, b)

        return fields
    left, right = compile_value(node.left), compile_value(node.right)
    return lambda env: op(left(env), right(env))


def compile_sign(left: ex.Node, right: ex.Node) -> Callable[[Env], int]:
    """A closure giving the sign of ``left - right`` (-1, 0 or 1), exact."""
    difference = _arith(ex.Arith(left.pos, "-", left, right))

    def sign(env: Env) -> int:
        diff = difference(env)
        return (diff > 0) - (diff < 0)

    return sign


def compile_same(left: ex.Node, right: ex.Node) -> Callable[[Env], int]:
    """A closure giving 1 when ``left == right`` (text, bool or numbers), else 0."""
    lhs, rhs = compile_value(left), compile_value(right)
    return lambda env: 1 if lhs(env) == rhs(env) else 0


def rounding(kind: str, minor_units: int) -> Callable[[Decimal], Any]:
    """The rounding of a computed number of type ``kind`` (module docstring): money to
    ``minor_units`` decimals (``Decimal``), int exact (``int``; ``ArithmeticError`` for a
    fraction, which the type checker rules out: never truncate), decimal at most 60
    significant digits, clamped to ±10**12, a whole number without trailing zeros
    (``Decimal``, never ``-0``)."""
    if kind == "money":
        unit = Decimal(1).scaleb(-minor_units)
        return lambda v: v.quantize(unit, context=CONTEXT)
    if kind == "int":

        def whole(v: Decimal) -> int:
            if v != v.to_integral_value():
                raise ArithmeticError(f"whole-number value expected, got {v}")
            return int(v)

        return whole

    def ratio(v: Decimal) -> Decimal:
        v = CONTEXT.plus(v)  # at most 60 significant digits
        v = max(-DECIMAL_CLAMP, min(DECIMAL_CLAMP, v))
        if v == v.to_integral_value() and v.as_tuple().exponent < 0:
            v = v.quantize(Decimal(1))  # 2.000 -> 2: same value, shorter trail
        return CONTEXT.plus(v)  # also turns -0 into 0

    return ratio


class Derivation:
    """Every derived value of a policy, compiled once (``CompiledPolicy.derive``).

    Calling it with ``env`` holding the validated inputs computes each derived value in file
    order (later ones may read earlier ones), rounds it (``rounding``), adds it to ``env``
    and returns ``(derived, notes)``: ``derived`` maps name → value in file order; ``notes``
    records each zero-divisor fallback (``"utilisation: divisor is 0, used if_zero_divisor
    999"``) for the trail. Raises ``ArithmeticError`` if a value cannot be computed exactly.
    Immutable; safe to share between threads."""

    def __init__(self, policy: Policy):
        self._steps = tuple(
            (
                d.name,
                compile_value(d.node),
                rounding(d.type.kind, policy.minor_units),
                d.if_zero_divisor,
                f"{d.name}: divisor is 0, used if_zero_divisor {d.if_zero_divisor}",
            )
            for d in policy.derived
        )

    def __call__(self, env: Env) -> tuple[dict[str, Any], list[str]]:
        derived: dict[str, Any] = {}
        notes: list[str] = []
        for name, compute, rounded, if_zero_divisor, note in self._steps:
            try:
                v = compute(env)
            except DivideByZero:
                notes.append(note)
                v = if_zero_divisor
            derived[name] = env[name] = rounded(v)
        return derived, notes
