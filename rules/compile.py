"""Compile a validated ``Policy`` into durable_rules ruleset definitions (plain JSON).

This module does not import durable_rules: it produces the rule dictionaries that
``engine.adapter`` registers. Two rule groups, because stage-two rules read the score and
tier that stage one produces:

- ``s1``: knock-outs and scorecard bins (read inputs and derived values);
- ``s2``: deposits, payment-term caps and referrals (also read ``score``, ``tier``, ...).

Exactness. durable_rules compares strings with numbers wrongly, rejects some floats and
caps integers, so every value crosses into the engine as an exact integer or a string:

- money as integer minor units (EUR cents), ``int`` as is, ``bool`` as 1/0, enums and
  strings as text;
- ``decimal`` on a half-millionth grid: ``2 * floor(v * 10**6) + (0 if v * 10**6 is whole
  else 1)``. A decimal input (at most 6 places) lands on an even number; a derived ratio
  such as utilisation, carried unrounded, lands on the odd number between the two
  millionths around it, so ``utilisation > 2`` is true for 2.0000000001 and false for
  exactly 2 — no rounding ever moves a value across a policy threshold;
- a field compared with a literal is compared in the field's units; a literal with more
  decimals than a money/int field has is turned into the equivalent integer bound
  (``x > 100.005`` with cents becomes ``cents > 10000``), so boundaries stay exact;
- anything else (two fields, arithmetic such as ``order.amount > customer.credit_limit * 1.1``)
  becomes a *term*: the evaluator computes ``sign(left - right)`` exactly in ``Decimal`` and the
  engine compares that sign with 0. Equality of two text/bool values becomes a 1/0 term.

No arithmetic is ever sent to the engine (its integer division by zero kills the process).

``compile_policy`` also builds, once per policy, what ``engine.evaluate`` runs per request:
the request check, the derived values, each group's field encoders and term closures, the
scorecard and the decision and trail templates. Those builders live in ``engine`` (this
module imports them; ``engine`` imports this module only from ``engine.evaluate``); every
closure is made from the checked expression tree, never from text (no ``eval``/``exec``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.inputs import RequestValidator
from engine.outcome import DecisionBuilder
from engine.scoring import Scorecard
from engine.values import Derivation, compile_same, compile_sign
from rules import expr as ex
from rules.policy import STAGE_ONE, Policy

DECIMAL_PLACES = 6
DECIMAL_LIMIT = Decimal(10) ** 12  # derived decimals are clamped to this magnitude
ENGINE_INT_LIMIT = 2**62  # literals this large (in engine units) become exact terms
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_DR_OP = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "!=": "$neq"}


@dataclass(frozen=True)
class Term:
    """A value the evaluator computes for the engine: ``kind`` ``sign`` = sign of
    ``left - right`` (-1, 0, 1); ``same`` = 1 when ``left == right`` else 0."""

    key: str
    kind: str
    left: ex.Node
    right: ex.Node


@dataclass
class Group:
    """One rule group: ``rules`` maps rule id → durable_rules condition (``True`` = always);
    ``terms`` the terms its conditions use; ``fields`` the field paths it reads."""

    name: str
    rules: dict[str, Any] = field(default_factory=dict)
    terms: list[Term] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    term_index: dict[tuple, str] = field(default_factory=dict, repr=False)
    encoders: list[tuple[str, str, Callable[[Any], int | str]]] = field(
        default_factory=list, repr=False
    )  # (path, engine key, encoder) per field
    term_values: list[tuple[str, Callable[[dict[str, Any]], int]]] = field(
        default_factory=list, repr=False
    )  # (engine key, closure computing the term from the evaluation env) per term


@dataclass
class CompiledPolicy:
    """What ``engine.evaluate`` runs: the validated ``policy``, engine keys per field path
    (``keys``), the two groups, the ids of rules that can never match (``when: false``),
    and what is compiled once for this policy so that per request only values are computed:
    the request check (``validate``, ``engine.inputs.RequestValidator``), the derived values
    (``derive``, ``engine.values.Derivation``), the scorecard (``scorecard``,
    ``engine.scoring.Scorecard``) and the decision and trail templates (``outcome``,
    ``engine.outcome.DecisionBuilder``).
    ``name`` (``cg_<sha256 prefix>``) prefixes the ruleset names registered in the engine."""

    policy: Policy
    name: str
    keys: dict[str, str]
    groups: dict[str, Group]
    never: frozenset[str]
    validate: RequestValidator
    derive: Derivation
    scorecard: Scorecard
    outcome: DecisionBuilder
    runtime: Any = None  # engine handles, filled by engine.evaluate on first use


def scale_of(t: ex.Type, minor_units: int) -> int | None:
    """Decimal places a numeric type carries into the engine (None for non-numbers)."""
    if t.kind == "money":
        return minor_units
    if t.kind == "int":
        return 0
    if t.kind == "decimal":
        return DECIMAL_PLACES
    return None


def encode(t: ex.Type, value: Any, minor_units: int) -> int | str:
    """Engine representation of a validated value of type ``t`` (see module docstring).
    Raises ``ValueError`` if a number has more decimals than its type carries."""
    if t.kind == "bool":
        return 1 if value else 0
    if t.kind in ("enum", "string"):
        return str(value)
    places = scale_of(t, minor_units)
    scaled = Decimal(value).scaleb(places)
    if t.kind == "decimal":
        floor = math.floor(scaled)
        return 2 * floor + (0 if scaled == floor else 1)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {places} decimal places")
    return int(scaled)


def encoder(t: ex.Type, minor_units: int) -> Callable[[Any], int | str]:
    """A fast ``encode`` for one type, made once per field at compile time. Same results
    and errors as ``encode``."""
    if t.kind == "bool":
        return lambda v: 1 if v else 0
    if t.kind in ("enum", "string"):
        return str
    if t.kind == "int":
        return lambda v: v if type(v) is int else encode(t, v, minor_units)
    if t.kind == "money":

        def money(v: Any) -> int:
            scaled = v.scaleb(minor_units)
            whole = int(scaled)
            if whole != scaled:
                raise ValueError(f"{v} has more than {minor_units} decimal places")
            return whole

        return money
    if t.kind == "decimal":

        def grid(v: Any) -> int:
            scaled = Decimal(v).scaleb(DECIMAL_PLACES)
            floor = math.floor(scaled)
            return 2 * floor + (0 if scaled == floor else 1)

        return grid
    return lambda v: encode(t, v, minor_units)


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Compile ``policy`` into rule groups. Pure and deterministic: the same policy gives the
    same output. Raises nothing for a validated policy."""
    paths = sorted(policy.symbols)
    keys = {p: f"f{i}" for i, p in enumerate(paths)}
    groups = {"s1": Group("s1"), "s2": Group("s2")}
    never: set[str] = set()
    for rule in policy.rules:
        group = groups["s1" if rule.stage in STAGE_ONE else "s2"]
        if isinstance(rule.cond, ex.Const) and not rule.cond.value:
            never.add(rule.id)
            continue
        compiler = _CondCompiler(policy, keys, group)
        group.rules[rule.id] = True if rule.cond is None else compiler.compile(rule.cond)
    for g in groups.values():
        g.fields = sorted({p for p in _fields_in(g, keys)})
        g.encoders = [
            (p, keys[p], encoder(policy.symbols[p], policy.minor_units)) for p in g.fields
        ]
        g.term_values = [
            (t.key, (compile_sign if t.kind == "sign" else compile_same)(t.left, t.right))
            for t in g.terms
        ]
    return CompiledPolicy(
        policy,
        f"cg_{policy.sha256[:16]}",
        keys,
        groups,
        frozenset(never),
        validate=RequestValidator(policy),
        derive=Derivation(policy),
        scorecard=Scorecard(policy),
        outcome=DecisionBuilder(policy),
    )


def _fields_in(group: Group, keys: dict[str, str]) -> set[str]:
    reverse = {v: k for k, v in keys.items()}
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in reverse:
                    found.add(reverse[k])
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(list(group.rules.values()))
    for term in group.terms:
        found.update(ex.fields_of(term.left))
        found.update(ex.fields_of(term.right))
    return found


class _CondCompiler:
    def __init__(self, policy: Policy, keys: dict[str, str], group: Group):
        self.policy = policy
        self.keys = keys
        self.group = group

    def term(self, kind: str, left: ex.Node, right: ex.Node) -> str:
        """Engine key of the term ``kind(left, right)``; one term per distinct expression
        pair in the group, however many rules use it."""
        index = self.group.term_index
        key = index.get((kind, left, right))
        if key is None:
            key = index[(kind, left, right)] = f"t{len(self.group.terms)}"
            self.group.terms.append(Term(key, kind, left, right))
        return key

    def type_of(self, node: ex.Node) -> ex.Type | None:
        if isinstance(node, ex.Field):
            return self.policy.symbols[node.path]
        return None

    def compile(self, node: ex.Node, negate: bool = False) -> Any:
        if isinstance(node, ex.Not):
            return self.compile(node.operand, not negate)
        if isinstance(node, ex.BoolOp):
            op = node.op if not negate else ("or" if node.op == "and" else "and")
            parts = [self.compile(i, negate) for i in node.items]
            return {"$and" if op == "and" else "$or": parts}
        if isinstance(node, ex.Field):  # a bool field used as a condition
            return {self.keys[node.path]: 0 if negate else 1}
        if isinstance(node, ex.Lit) and isinstance(node.value, bool):
            # a constant inside a larger condition: compare a guaranteed term with itself
            truth = node.value != negate
            key = self.term("same", ex.Lit(0, 1), ex.Lit(0, 1))
            return {key: 1 if truth else 0}
        if isinstance(node, ex.In):
            neg = node.negated != negate
            parts = [
                self.compile(ex.Cmp(node.pos, "!=" if neg else "==", node.operand, lit))
                for lit in node.items
            ]
            if len(parts) == 1:
                return parts[0]
            return {"$and" if neg else "$or": parts}
        if isinstance(node, ex.Cmp):
            op = _NEGATE[node.op] if negate else node.op
            return self.comparison(op, node.left, node.right)
        raise AssertionError(f"not a condition: {node!r}")  # pragma: no cover

    def comparison(self, op: str, left: ex.Node, right: ex.Node) -> Any:
        if isinstance(left, ex.Lit) and isinstance(right, ex.Field):
            left, right, op = right, left, _FLIP[op]
        lt = self.type_of(left)
        if isinstance(left, ex.Field) and isinstance(right, ex.Lit) and lt is not None:
            direct = self.field_literal(op, left, lt, right.value)
            if direct is not None:
                return direct
        ltype = self.value_type(left)
        if ltype is not None and ltype.kind in ("bool", "enum", "string"):
            key = self.term("same", left, right)
            return {key: 1 if op == "==" else 0}
        key = self.term("sign", left, right)
        return _cmp(op, key, 0)

    def value_type(self, node: ex.Node) -> ex.Type | None:
        if isinstance(node, ex.Field):
            return self.policy.symbols[node.path]
        if isinstance(node, ex.Lit):
            if isinstance(node.value, bool):
                return ex.Type("bool")
            if isinstance(node.value, str):
                return ex.Type("string")
        return None

    def field_literal(self, op: str, fld: ex.Field, t: ex.Type, value: Any) -> Any:
        key = self.keys[fld.path]
        if t.kind == "bool":
            return _cmp(op, key, 1 if value else 0)
        if t.kind in ("enum", "string"):
            return _cmp(op, key, str(value))
        places = scale_of(t, self.policy.minor_units)
        scaled = Decimal(value).scaleb(places)
        if t.kind == "decimal":
            if scaled != scaled.to_integral_value() or abs(value) >= DECIMAL_LIMIT:
                return None  # between grid points or beyond the clamp: exact term
            return _cmp(op, key, 2 * int(scaled))
        if abs(scaled) >= ENGINE_INT_LIMIT:
            return None  # beyond the engine's int64: an exact term instead
        if scaled == scaled.to_integral_value():
            return _cmp(op, key, int(scaled))
        if op in ("==", "!="):
            return None  # can never be equal in the field's units: use an exact term
        # x > 100.005 (cents) <=> X > 10000 ; x >= 100.005 <=> X >= 10001
        bound = math.floor(scaled) if op in (">", "<=") else math.ceil(scaled)
        return _cmp(op, key, int(bound))


def _cmp(op: str, key: str, value: Any) -> dict:
    if op == "==":
        return {key: value}
    return {_DR_OP[op]: {key: value}}
