"""Test-only reference interpreter of the policy language.

Deliberately independent of ``rules/`` and ``engine/``: it reads the policy YAML with
PyYAML, walks Python's ``ast`` of each condition directly and computes everything in plain
``Decimal`` arithmetic, following the semantics written in README.md (policy language). The
property test compares it with the compiled durable_rules rulesets.
"""

from __future__ import annotations

import ast
import decimal
import operator
from decimal import Decimal
from typing import Any

import yaml
from babel.numbers import get_currency_precision

CTX = decimal.Context(prec=60)  # the documented precision of quotients
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}


def _dec_loader():
    class Loader(yaml.SafeLoader):
        pass

    def construct_float(loader, node):
        return Decimal(loader.construct_scalar(node))

    Loader.add_constructor("tag:yaml.org,2002:float", construct_float)
    return Loader


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_dec_loader())  # noqa: S506 - SafeLoader subclass


def _num(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, Decimal)):
        return v
    return Decimal(v)


class Ref:
    """Evaluate one policy (parsed YAML dict) the way the documentation says."""

    def __init__(self, doc: dict):
        self.doc = doc
        self.minor = get_currency_precision(doc["currency"])

    # -- expressions ---------------------------------------------------------------------
    def value(self, text: str, env: dict[str, Any]) -> Any:
        tree = ast.parse(text.strip(), mode="eval")
        return self._eval(tree.body, env, text.strip())

    def _eval(self, node: ast.AST, env: dict[str, Any], src: str) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, float):
                return Decimal(ast.get_source_segment(src, node))
            return _num(node.value)
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = ast.unparse(node)
            if name in ("true", "True"):
                return True
            if name in ("false", "False"):
                return False
            return _num(env[name])
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, env, src)
            return (not v) if isinstance(node.op, ast.Not) else -v
        if isinstance(node, ast.BinOp):
            a, b = self._eval(node.left, env, src), self._eval(node.right, env, src)
            if isinstance(node.op, ast.Add):
                return CTX.add(a, b)
            if isinstance(node.op, ast.Sub):
                return CTX.subtract(a, b)
            if isinstance(node.op, ast.Mult):
                return CTX.multiply(a, b)
            if b == 0:
                raise ZeroDivisionError
            return CTX.divide(a, b)
        if isinstance(node, ast.BoolOp):
            vals = [self._eval(v, env, src) for v in node.values]
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env, src)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, (ast.In, ast.NotIn)):
                    items = [self._eval(e, env, src) for e in comp.elts]
                    ok = left in items
                    if isinstance(op, ast.NotIn):
                        ok = not ok
                    if not ok:
                        return False
                    continue
                right = self._eval(comp, env, src)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError(f"reference: unsupported {ast.dump(node)}")

    def holds(self, when: Any, env: dict[str, Any]) -> bool:
        if when is True or when is False:
            return when
        return bool(self.value(when, env))

    # -- the decision pipeline -------------------------------------------------------------
    def inputs(self, request: dict) -> dict[str, Any]:
        env = {}
        for path, spec in self.doc["inputs"].items():
            spec = {"type": spec} if isinstance(spec, str) else spec
            group, name = path.split(".")
            raw = request.get(group, {}).get(name)
            if raw is None:
                raw = spec["default"]
            if spec["type"] in ("money", "decimal", "int") and not isinstance(raw, bool):
                raw = Decimal(str(raw))
            env[path] = raw
        return env

    def derived(self, env: dict[str, Any]) -> dict[str, Any]:
        out = {}
        input_types = {}
        for path, spec in self.doc["inputs"].items():
            t = spec if isinstance(spec, str) else spec["type"]
            input_types[path] = t.split("[")[0]
        kinds = self._derived_types(input_types)
        for name, spec in (self.doc.get("derived") or {}).items():
            try:
                v = self.value(spec["expr"], env)
            except ZeroDivisionError:
                v = Decimal(spec["if_zero_divisor"])
            kind = kinds[name]
            if kind == "money":
                v = v.quantize(Decimal(1).scaleb(-self.minor), rounding=decimal.ROUND_HALF_EVEN)
            elif kind == "int":
                v = int(v)
            else:  # decimals are carried unrounded (60 digits), clamped to +-10**12
                v = max(-(Decimal(10) ** 12), min(Decimal(10) ** 12, CTX.plus(v)))
            out[name] = env[name] = v
        return out

    def _derived_types(self, types: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, spec in (self.doc.get("derived") or {}).items():
            tree = ast.parse(spec["expr"], mode="eval").body
            all_types = {**types, **out}

            def kind(n: ast.AST, all_types=all_types) -> str:
                if isinstance(n, ast.Constant):
                    return "number"
                if isinstance(n, (ast.Name, ast.Attribute)):
                    return all_types[ast.unparse(n)]
                if isinstance(n, ast.UnaryOp):
                    return kind(n.operand)
                a, b = kind(n.left), kind(n.right)
                if isinstance(n.op, ast.Div):
                    return "money" if a == "money" and b != "money" else "decimal"
                if "money" in (a, b):
                    return "money"
                if "decimal" in (a, b) or "number" in (a, b) and "int" not in (a, b):
                    return "decimal"
                return "int"

            out[name] = kind(tree)
        return out

    def bins_matched(self, factor: dict, env: dict[str, Any]) -> list[int]:
        v = _num(env[factor["field"]])
        hits = []
        for i, b in enumerate(factor["bins"]):
            if "in" in b:
                ok = v in b["in"]
            else:
                ok = ("from" not in b or v >= Decimal(b["from"])) and (
                    "below" not in b or v < Decimal(b["below"]))
            if ok:
                hits.append(i)
        return hits

    def decide(self, request: dict) -> dict[str, Any]:
        """Reference result: matched rule ids (set), derived values, score, tier."""
        env = self.inputs(request)
        derived = self.derived(env)
        matched = set()
        for r in self.doc.get("knockouts") or []:
            if self.holds(r["when"], env):
                matched.add(r["id"])
        score = self.doc["scorecard"].get("base_points", 0)
        for f in self.doc["scorecard"]["factors"]:
            hits = self.bins_matched(f, env)
            assert len(hits) == 1, (f["id"], hits)
            matched.add(f"{f['id']}.{hits[0] + 1}")
            score += f["bins"][hits[0]]["points"]
        tier = next(t for t in self.doc["tiers"] if t["min_score"] <= score <= t["max_score"])
        env.update({
            "score": Decimal(score), "tier": tier["tier"],
            "tier_max_payment_term_days": Decimal(tier["max_payment_term_days"]),
            "tier_deposit_pct": Decimal(tier["deposit_pct"]),
            "tier_auto_approve_up_to": Decimal(tier["auto_approve_up_to"]),
        })
        for section in ("declines", "deposits", "referrals"):
            for r in self.doc.get(section) or []:
                if self.holds(r["when"], env):
                    matched.add(r["id"])
        for r in (self.doc["terms"].get("rules") or []):
            if self.holds(r["when"], env):
                matched.add(r["id"])
        return {"matched": matched, "derived": derived, "score": score, "tier": tier["tier"]}
