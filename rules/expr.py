"""Condition and expression language: parse and type-check, never execute.

Conditions (``when:``) and derived expressions (``expr:``) are short strings such as
``customer.days_past_due > 60 and order.amount >= 10000.10``. They are parsed with Python's
``ast`` module in ``eval`` mode and every node is checked against a whitelist; nothing is
ever passed to ``eval``/``exec``. The result is a small typed tree (``Node`` subclasses)
that the compiler turns into durable_rules JSON and the evaluator uses to compute values.

Grammar (what the whitelist admits):

- literals: integers, decimals (``10000.10``, kept exact as ``Decimal``), strings in quotes,
  ``true``/``false`` (also ``True``/``False``);
- field paths: ``order.amount``, ``customer.risk_class``, ``utilisation`` (declared inputs,
  derived names and the stage values ``score``, ``tier``, ...);
- arithmetic ``+ - * /`` and unary minus on numbers;
- comparisons ``== != < <= > >=`` (chains such as ``0 < x <= 5`` mean ``0 < x and x <= 5``),
  ``in [...]`` / ``not in [...]`` with a list of literals;
- ``and``, ``or``, ``not`` and parentheses.

Types: ``money`` (in the policy currency), ``int``, ``decimal``, ``bool``, ``enum`` (one of
the declared values), ``string``. Numbers mix as a credit manager would expect with two
safeguards: money never mixes with a non-money *field* in ``+``/``-``/comparisons (adding
days to euros is an error) and money times money is an error. A numeric literal fits any
numeric type. Errors are ``ExprError`` with a stable code and the 0-based character offset
in the string.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

NUMERIC = frozenset({"money", "int", "decimal"})


# ---------------------------------------------------------------------------------------
# Types


@dataclass(frozen=True)
class Type:
    """A value type: ``kind`` is money/int/decimal/bool/enum/string; enums carry values."""

    kind: str
    values: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC

    def __str__(self) -> str:
        if self.kind == "literal_string":
            return "text"
        if self.kind == "fraction":
            return "number"
        if self.kind == "enum":
            return f"enum[{', '.join(self.values)}]"
        return self.kind


LIT_NUMBER = Type("number")  # a whole-number literal: fits money, int and decimal
LIT_FRACTION = Type("fraction")  # a literal that may have a fraction (2.5, 1/2)


def is_lit(t: Type) -> bool:
    """Whether ``t`` is the type of a numeric literal (or of arithmetic on literals)."""
    return t in (LIT_NUMBER, LIT_FRACTION)


def is_num(t: Type) -> bool:
    """Whether ``t`` is numeric: a numeric field type or a numeric literal."""
    return t.numeric or is_lit(t)


LIT_STRING = Type("literal_string")


def parse_type(text: str) -> Type:
    """Parse a declared type: ``money``, ``int``, ``decimal``, ``bool``, ``string`` or
    ``enum[a, b, c]``. Raises ``ValueError`` with a readable message otherwise."""
    t = str(text).strip()
    if t in ("money", "int", "decimal", "bool", "string"):
        return Type(t)
    if t.startswith("enum[") and t.endswith("]"):
        values = tuple(v.strip() for v in t[5:-1].split(",") if v.strip())
        if not values:
            raise ValueError("an enum needs at least one value: enum[low, medium, high]")
        bad = [v for v in values if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", v)]
        if bad:
            raise ValueError(
                f"enum values are names of letters, digits and _ . + - "
                f"(no quotes, spaces or commas): {bad[0]!r}"
            )
        if len(set(values)) != len(values):
            raise ValueError(f"enum values repeat: {t}")
        return Type("enum", values)
    raise ValueError(
        f"unknown type {t!r}; use money, int, decimal, bool, string or enum[a, b, ...]"
    )


# ---------------------------------------------------------------------------------------
# Tree


@dataclass(frozen=True)
class Node:
    # 0-based character offset in the source string; not part of equality, so the same
    # expression written in two rules compares (and hashes) equal.
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Lit(Node):
    value: Decimal | int | str | bool


@dataclass(frozen=True)
class Field(Node):
    path: str


@dataclass(frozen=True)
class Arith(Node):
    op: str  # + - * /
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg(Node):
    operand: Node


@dataclass(frozen=True)
class Cmp(Node):
    op: str  # == != < <= > >=
    left: Node
    right: Node


@dataclass(frozen=True)
class In(Node):
    operand: Node
    items: tuple[Lit, ...]
    negated: bool


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # and / or
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class Const(Node):
    """The whole condition is a constant (``true`` = always matches)."""

    value: bool


class ExprError(Exception):
    """A problem in one expression: ``code`` (stable), ``message`` and ``offset`` (0-based
    character offset in the expression text)."""

    def __init__(self, code: str, message: str, offset: int = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.offset = offset


# ---------------------------------------------------------------------------------------
# Parsing

_CMP = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_BOOL_NAMES = {"true": True, "True": True, "false": False, "False": False}
MAX_LENGTH = 2000
MAX_DEPTH = 40


def _offset(text: str, node: ast.AST) -> int:
    line = getattr(node, "lineno", 1)
    col = getattr(node, "col_offset", 0)
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col


def parse(text: str) -> Node:
    """Parse an expression string into a ``Node`` tree.

    Raises ``ExprError`` (codes ``syntax``, ``unsupported``, ``too_long``) for anything
    outside the grammar in the module docstring."""
    if not isinstance(text, str):
        raise ExprError("syntax", f"expected an expression string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError("too_long", f"expression is longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExprError("syntax", "empty expression")
    try:
        tree = ast.parse(text.strip("\n"), mode="eval")
    except SyntaxError as exc:
        col = (exc.offset or 1) - 1
        hint = ""
        if re.search(r"(?<![=!<>])=(?!=)", text):
            hint = " (use == to compare, not =)"
        raise ExprError("syntax", f"cannot parse: {exc.msg}{hint}", col) from None
    except (RecursionError, MemoryError):
        raise ExprError("too_complex", "expression is nested too deeply", 0) from None
    return _Builder(text).build(tree.body)


class _Builder:
    def __init__(self, text: str):
        self.text = text
        self.depth = 0

    def off(self, node: ast.AST) -> int:
        return _offset(self.text, node)

    def build(self, node: ast.AST) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ExprError(
                    "too_complex",
                    f"expression nests deeper than {MAX_DEPTH} levels; split it into "
                    "derived values or several rules",
                    self.off(node),
                )
            return self._build(node)
        finally:
            self.depth -= 1

    def _build(self, node: ast.AST) -> Node:
        pos = self.off(node)
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            return BoolOp(pos, op, tuple(self.build(v) for v in node.values))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return Not(pos, self.build(node.operand))
            if isinstance(node.op, ast.USub):
                inner = self.build(node.operand)
                if (
                    isinstance(inner, Lit)
                    and isinstance(inner.value, (int, Decimal))
                    and not isinstance(inner.value, bool)
                ):
                    return Lit(pos, -inner.value)
                return Neg(pos, inner)
            if isinstance(node.op, ast.UAdd):
                return self.build(node.operand)
            raise ExprError("unsupported", "only 'not' and '-' may stand before a value", pos)
        if isinstance(node, ast.BinOp):
            op = _ARITH.get(type(node.op))
            if op is None:
                raise ExprError(
                    "unsupported",
                    "only + - * / are allowed in arithmetic",
                    pos,
                )
            return Arith(pos, op, self.build(node.left), self.build(node.right))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, (ast.Name, ast.Attribute)):
            return self.path(node)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            raise ExprError("unsupported", "a list may only follow 'in' or 'not in'", pos)
        if isinstance(node, ast.Call):
            raise ExprError(
                "unsupported", "function calls are not part of the policy language", pos
            )
        raise ExprError(
            "unsupported",
            f"'{ast.get_source_segment(self.text, node) or type(node).__name__}' is not part "
            "of the policy language",
            pos,
        )

    def constant(self, node: ast.Constant) -> Lit:
        pos = self.off(node)
        value = node.value
        if isinstance(value, bool):
            return Lit(pos, value)
        if isinstance(value, int):
            return Lit(pos, value)
        if isinstance(value, float):
            src = ast.get_source_segment(self.text, node) or repr(value)
            try:
                dec = Decimal(src.replace("_", ""))
            except InvalidOperation:
                raise ExprError("syntax", f"cannot read number {src!r}", pos) from None
            if not dec.is_finite():
                raise ExprError("syntax", f"number {src!r} is not finite", pos)
            return Lit(pos, dec)
        if isinstance(value, str):
            return Lit(pos, value)
        raise ExprError("unsupported", f"literal {value!r} is not supported", pos)

    def path(self, node: ast.AST) -> Node:
        pos = self.off(node)
        parts = []
        cur = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name):
            raise ExprError("unsupported", "a field path is names joined by dots", pos)
        parts.append(cur.id)
        dotted = ".".join(reversed(parts))
        if dotted in _BOOL_NAMES:
            return Lit(pos, _BOOL_NAMES[dotted])
        return Field(pos, dotted)

    def compare(self, node: ast.Compare) -> Node:
        pos = self.off(node)
        items: list[Node] = []
        left = self.build(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                if left is None:
                    raise ExprError(
                        "unsupported", "'in [...]' cannot be chained with another comparison", pos
                    )
                if not isinstance(comparator, (ast.List, ast.Tuple, ast.Set)):
                    raise ExprError(
                        "unsupported",
                        "'in' must be followed by a list of values in brackets: x in [a, b]",
                        self.off(comparator),
                    )
                lits = []
                for elt in comparator.elts:
                    lit = self.build(elt)
                    if not isinstance(lit, Lit):
                        raise ExprError(
                            "unsupported",
                            "a list after 'in' holds only literal values",
                            self.off(elt),
                        )
                    lits.append(lit)
                if not lits:
                    raise ExprError(
                        "unsupported", "the list after 'in' is empty", self.off(comparator)
                    )
                items.append(In(pos, left, tuple(lits), isinstance(op, ast.NotIn)))
                left = None  # type: ignore[assignment]
                continue
            sym = _CMP.get(type(op))
            if sym is None:
                raise ExprError("unsupported", "use == != < <= > >= in or not in to compare", pos)
            if left is None:
                raise ExprError(
                    "unsupported", "'in [...]' cannot be chained with another comparison", pos
                )
            right = self.build(comparator)
            items.append(Cmp(pos, sym, left, right))
            left = right
        return items[0] if len(items) == 1 else BoolOp(pos, "and", tuple(items))


# ---------------------------------------------------------------------------------------
# Type checking


@dataclass
class Checked:
    """Result of checking one expression: its type and the field paths it reads (in order
    of first appearance), and whether it divides by a non-literal."""

    type: Type
    fields: list[str] = field(default_factory=list)
    divides: bool = False


def suggest(name: str, known: list[str] | set[str]) -> str:
    """A ' (did you mean X?)' hint using difflib, or '' when nothing is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checker:
    """Type-checks a tree against ``symbols`` (field path → ``Type``).

    ``check_condition`` requires a bool result; ``check_value`` a value expression. Both
    collect every problem as ``ExprError`` in ``self.errors`` instead of stopping at the
    first (codes: unknown_field, type_mismatch, unknown_enum_value, division_by_zero,
    division_in_condition, not_a_condition)."""

    def __init__(self, symbols: dict[str, Type], allow_division: bool = False):
        self.symbols = symbols
        self.allow_division = allow_division
        self.errors: list[ExprError] = []
        self.fields: list[str] = []
        self.divides = False

    def err(self, code: str, msg: str, pos: int) -> None:
        self.errors.append(ExprError(code, msg, pos))

    def check_condition(self, node: Node) -> Checked:
        t = self.visit(node)
        if t is not None and t.kind != "bool":
            self.err(
                "not_a_condition", f"a condition must be true or false, this is a {t}", node.pos
            )
        return Checked(Type("bool"), self.fields, self.divides)

    def check_value(self, node: Node) -> Checked:
        t = self.visit(node)
        if t == LIT_NUMBER:
            t = Type("int")
        elif t == LIT_FRACTION:
            t = Type("decimal")
        return Checked(t or Type("decimal"), self.fields, self.divides)

    # visit returns None when an error was already reported for the subtree
    def visit(self, node: Node) -> Type | None:
        if isinstance(node, Lit):
            v = node.value
            if isinstance(v, bool):
                return Type("bool")
            if isinstance(v, int):
                return LIT_NUMBER
            if isinstance(v, Decimal):
                return LIT_NUMBER if v == v.to_integral_value() else LIT_FRACTION
            return LIT_STRING
        if isinstance(node, Field):
            t = self.symbols.get(node.path)
            if t is None:
                self.err(
                    "unknown_field",
                    f"{node.path!r} is not a declared input or derived value"
                    + suggest(node.path, self.symbols),
                    node.pos,
                )
                return None
            if node.path not in self.fields:
                self.fields.append(node.path)
            return t
        if isinstance(node, Neg):
            t = self.visit(node.operand)
            if t is not None and not is_num(t):
                self.err("type_mismatch", f"'-' needs a number, got {t}", node.pos)
                return None
            return t
        if isinstance(node, Arith):
            return self.arith(node)
        if isinstance(node, Cmp):
            self.compare(node)
            return Type("bool")
        if isinstance(node, In):
            self.membership(node)
            return Type("bool")
        if isinstance(node, BoolOp):
            for item in node.items:
                self.expect_bool(item)
            return Type("bool")
        if isinstance(node, Not):
            self.expect_bool(node.operand)
            return Type("bool")
        raise AssertionError(f"unexpected node {node!r}")  # pragma: no cover

    def expect_bool(self, node: Node) -> None:
        t = self.visit(node)
        if t is not None and t.kind != "bool":
            self.err("not_a_condition", f"expected true/false here, got {t}", node.pos)

    def arith(self, node: Arith) -> Type | None:
        lt, rt = self.visit(node.left), self.visit(node.right)
        if lt is None or rt is None:
            return None
        for t, side in ((lt, node.left), (rt, node.right)):
            if not is_num(t):
                self.err("type_mismatch", f"'{node.op}' needs numbers, got {t}", side.pos)
                return None
        if node.op == "/":
            if isinstance(node.right, Lit) and node.right.value == 0:
                self.err("division_by_zero", "division by the constant 0", node.right.pos)
                return None
            if not isinstance(node.right, Lit):
                self.divides = True
                if not self.allow_division:
                    self.err(
                        "division_in_condition",
                        "divide in a derived value (which states its result for a zero "
                        "divisor with if_zero_divisor), then compare that value here",
                        node.pos,
                    )
        return combine(node.op, lt, rt, node.pos, self.err)

    def compare(self, node: Cmp) -> None:
        lt, rt = self.visit(node.left), self.visit(node.right)
        if lt is None or rt is None:
            return
        if (
            is_lit(lt)
            and is_lit(rt)
            or lt.kind.startswith("literal")
            and rt.kind.startswith("literal")
        ):
            self.err("type_mismatch", "compares two constants; compare a field", node.pos)
            return
        if not compatible(lt, rt):
            self.err("type_mismatch", f"cannot compare {lt} with {rt}", node.pos)
            return
        if node.op not in ("==", "!=") and not (is_num(lt) and is_num(rt)):
            self.err("type_mismatch", f"'{node.op}' needs numbers, got {lt} and {rt}", node.pos)
            return
        for t, other in ((lt, node.right), (rt, node.left)):
            if t.kind == "enum" and isinstance(other, Lit) and other.value not in t.values:
                self.err(
                    "unknown_enum_value",
                    f"{other.value!r} is not one of {list(t.values)}"
                    + suggest(str(other.value), set(t.values)),
                    other.pos,
                )

    def membership(self, node: In) -> None:
        t = self.visit(node.operand)
        if t is None:
            return
        if not isinstance(node.operand, Field):
            self.err("unsupported", "the left side of 'in' must be a field", node.operand.pos)
            return
        for lit in node.items:
            lt = self.visit(lit)
            if lt is None:
                continue
            if not compatible(t, lt):
                self.err("type_mismatch", f"list value {lit.value!r} does not fit {t}", lit.pos)
            elif t.kind == "enum" and lit.value not in t.values:
                self.err(
                    "unknown_enum_value",
                    f"{lit.value!r} is not one of {list(t.values)}"
                    + suggest(str(lit.value), set(t.values)),
                    lit.pos,
                )


def compatible(a: Type, b: Type) -> bool:
    """Whether values of types ``a`` and ``b`` may be compared with ``==``/``<``."""
    textual = ("enum", "string", "literal_string")
    if a.kind in textual and b.kind in textual:
        if a.kind == "enum" and b.kind == "enum":
            return a == b
        return True
    if a.kind == "bool" and b.kind == "bool":
        return True
    if is_num(a) and is_num(b):
        if is_lit(a) or is_lit(b):
            return True
        return (a.kind == "money") == (b.kind == "money")
    return False


def combine(op: str, lt: Type, rt: Type, pos: int, err) -> Type | None:
    """Result type of ``lt op rt`` for numbers (see module docstring); reports mixing
    errors through ``err(code, message, pos)``. A whole number stays ``int`` only when
    nothing in it can have a fraction (``days + 1`` is int, ``days + 0.5`` and ``days / 2``
    are decimal)."""
    if is_lit(lt) and is_lit(rt):
        if op == "/" or LIT_FRACTION in (lt, rt):
            return LIT_FRACTION
        return LIT_NUMBER
    money = (lt.kind == "money", rt.kind == "money")
    fraction = LIT_FRACTION in (lt, rt) or "decimal" in (lt.kind, rt.kind)
    if op in "+-":
        if any(money) and not all(money) and not (is_lit(lt) or is_lit(rt)):
            err("type_mismatch", f"cannot {'add' if op == '+' else 'subtract'} {lt} and {rt}", pos)
            return None
        if any(money):
            return Type("money")
        return Type("decimal") if fraction else Type("int")
    if op == "*":
        if all(money):
            err("type_mismatch", "cannot multiply money by money", pos)
            return None
        if any(money):
            return Type("money")
        return Type("decimal") if fraction else Type("int")
    # division
    if money[1] and not money[0]:
        err("type_mismatch", f"cannot divide {lt} by money", pos)
        return None
    if all(money):
        return Type("decimal")  # a ratio
    if money[0]:
        return Type("money")
    return Type("decimal")


def fields_of(node: Node) -> list[str]:
    """Field paths read by ``node``, in order of first appearance."""
    out: list[str] = []

    def walk(n: Node) -> None:
        if isinstance(n, Field):
            if n.path not in out:
                out.append(n.path)
        elif isinstance(n, (Arith, Cmp)):
            walk(n.left)
            walk(n.right)
        elif isinstance(n, (Neg, Not)):
            walk(n.operand)
        elif isinstance(n, In):
            walk(n.operand)
        elif isinstance(n, BoolOp):
            for i in n.items:
                walk(i)

    walk(node)
    return out
