"""Validate a loaded policy document and build a ``rules.policy.Policy``.

Two passes, both collecting every error (never first-only):

1. structure: the pydantic models in ``rules.schema`` (unknown keys, missing keys, wrong
   types, ranges), with pydantic's error locations mapped to file positions;
2. meaning: types, inputs and defaults, every expression parsed and type-checked (unknown
   fields with a "did you mean"), unique ids, scorecard bins covering each field's whole
   domain, tier bands covering the whole score range without gaps or overlaps, escalation
   amounts ascending, zero-divisor results stated.

Error codes are stable and listed in README.md ("Policy errors").
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from babel.numbers import get_currency_precision, list_currencies
from pydantic import ValidationError

from rules import expr as ex
from rules.errors import PolicyError, PolicyErrors
from rules.loader import Document, load_file, load_text
from rules.policy import (
    STAGE_TWO_SYMBOLS,
    STAGES,
    DerivedDef,
    Factor,
    InputDef,
    Level,
    Policy,
    Rule,
    Tier,
)
from rules.schema import PolicySpec

INPUT_PATH = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
RESERVED_INPUTS = {"order.currency", "order.id", "customer.id"}
_PYDANTIC_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "string_pattern_mismatch": "invalid_name",
}


def load_policy(path: str | Path) -> Policy:
    """Load, structurally validate and check a policy file.

    Returns a ``Policy``. Raises ``PolicyErrors`` listing every problem with
    ``file:line:column: code: message``."""
    return check(load_file(path))


def load_policy_text(text: str, file: str = "<policy>") -> Policy:
    """Like ``load_policy`` for YAML text already in memory."""
    return check(load_text(text, file))


def check(doc: Document) -> Policy:
    """Validate a ``Document``; raise ``PolicyErrors`` or return the ``Policy``."""
    if not isinstance(doc.data, dict):
        raise PolicyErrors([doc.error((), "invalid_policy", "a policy is a mapping of sections")])
    data = _normalise(doc.data)
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        structural = _structure_errors(doc, exc)
        # An unknown key (usually a typo) should not hide the meaning errors elsewhere:
        # drop the unknown keys, and if the rest is well-formed check its meaning too.
        if not all(e["type"] == "extra_forbidden" for e in exc.errors()):
            raise PolicyErrors(structural) from None
        for e in exc.errors():
            _drop(data, e["loc"])
        try:
            spec = PolicySpec.model_validate(data)
        except ValidationError:  # pragma: no cover - only unknown keys were reported
            raise PolicyErrors(structural) from None
        try:
            _Semantics(doc, spec).run()
        except PolicyErrors as more:
            raise PolicyErrors(structural + more.errors) from None
        raise PolicyErrors(structural) from None
    return _Semantics(doc, spec).run()


def _drop(data: Any, loc: tuple) -> None:
    """Remove the key at ``loc`` from nested dicts/lists (copying dicts on the way)."""
    node = data
    for part in loc[:-1]:
        node = node[part]
    if isinstance(node, dict):
        node.pop(loc[-1], None)


def _normalise(data: dict) -> dict:
    """Short forms: ``inputs: {order.amount: money}`` means ``{type: money}``. Returns a
    deep copy, so the document's own data is never changed."""
    import copy

    out = copy.deepcopy(data)
    inputs = out.get("inputs")
    if isinstance(inputs, dict):
        out["inputs"] = {k: ({"type": v} if isinstance(v, str) else v) for k, v in inputs.items()}
    return out


def _model_fields(model: type, loc: tuple) -> list[str]:
    """Allowed keys at ``loc`` (for "did you mean" on unknown keys)."""
    from pydantic import BaseModel

    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part) or next(
                (f for f in current.model_fields.values() if f.alias == part), None
            )
            if info is None:
                return []
            current = _inner_model(info.annotation)
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> Any:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


_UNION_TAGS = {"str", "bool", "int", "decimal", "list", "dict"}


def _where(loc: tuple) -> str:
    """A location for people: ``knockouts #2 when`` (list positions 1-based)."""
    return " ".join(f"#{p + 1}" if isinstance(p, int) else str(p) for p in loc) or "policy"


def _structure_errors(doc: Document, exc: ValidationError) -> list[PolicyError]:
    errors = []
    seen_locs: set[tuple] = set()
    for e in exc.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.endswith("]")))
        union = bool(loc) and loc[-1] in _UNION_TAGS
        if union:
            loc = loc[:-1]
        if loc in seen_locs:
            continue  # a union (text or true/false) reports once per member: keep one
        seen_locs.add(loc)
        code = _PYDANTIC_CODES.get(e["type"], "invalid_value")
        where = _where(loc)
        if code == "unknown_field":
            allowed = _model_fields(PolicySpec, loc)
            msg = f"{loc[-1]!r} is not a known key here" + ex.suggest(str(loc[-1]), allowed)
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        elif code == "missing_field":
            msg = f"{_where(loc[:-1])}: required key {loc[-1]!r} is missing"
        elif union and loc[-1] == "when":
            msg = f"{where}: a condition is text (an expression) or true/false"
        else:
            msg = f"{where}: {e['msg']}"
        if code not in ("unknown_field", "missing_field") and "input" in e:
            if not isinstance(e["input"], (dict, list)):
                got = repr(e["input"])
                msg += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
        errors.append(doc.error(loc, code, msg))
    return errors


class _Semantics:
    def __init__(self, doc: Document, spec: PolicySpec):
        self.doc = doc
        self.spec = spec
        self.errors: list[PolicyError] = []
        self.symbols: dict[str, ex.Type] = {}
        self.inputs: dict[str, InputDef] = {}
        self.rules: list[Rule] = []
        self.ids: dict[str, tuple] = {}
        self.unusable: set[str] = set()  # declared but broken: no follow-on errors for them

    def err(self, path: tuple, code: str, message: str, offset: int | None = None) -> None:
        self.errors.append(self.doc.error(path, code, message, offset))

    def run(self) -> Policy:
        spec = self.spec
        if spec.currency not in list_currencies():
            self.err(
                ("currency",),
                "unknown_currency",
                f"{spec.currency!r} is not an ISO 4217 currency code",
            )
            minor = 2
        else:
            minor = get_currency_precision(spec.currency)
        self.minor = minor
        self.check_inputs()
        derived = self.check_derived()
        self.check_rules(("knockouts",), spec.knockouts, "knockout", stage_two=False)
        factors, lo, hi = self.check_scorecard()
        tiers = self.check_tiers(lo, hi)
        levels = self.check_escalation()
        self.stage_two_symbols(tiers)
        self.check_rules(("declines",), spec.declines, "decline", stage_two=True)
        self.check_rules(("deposits",), spec.deposits, "deposit", stage_two=True)
        self.check_rules(("terms", "rules"), spec.terms.rules, "term", stage_two=True)
        self.check_rules(("referrals",), spec.referrals, "referral", stage_two=True, levels=levels)
        if self.errors:
            raise PolicyErrors(self.errors)
        order = {stage: i for i, stage in enumerate(STAGES)}
        rules = sorted(self.rules, key=lambda r: order[r.stage])  # stable: file order kept
        return Policy(
            id=spec.policy,
            version=spec.version,
            currency=spec.currency,
            minor_units=minor,
            description=spec.description,
            sha256=self.doc.sha256,
            file=self.doc.file,
            inputs=self.inputs,
            derived=tuple(derived),
            rules=tuple(rules),
            base_points=spec.scorecard.base_points,
            max_reasons=spec.scorecard.max_reasons,
            factors=tuple(factors),
            min_score=lo,
            max_score=hi,
            tiers=tuple(tiers),
            over_cap=spec.terms.over_cap,
            over_cap_reason_code=spec.terms.over_cap_reason_code,
            escalation_basis=spec.escalation.basis,
            levels=tuple(levels),
            symbols=dict(self.symbols),
            source=self.doc.text,
        )

    # -- inputs and derived values ------------------------------------------------------

    def check_inputs(self) -> None:
        import re

        for path, spec in self.spec.inputs.items():
            where = ("inputs", path)
            if not re.match(INPUT_PATH, path):
                self.err(
                    where,
                    "invalid_name",
                    f"input {path!r} must be group.name in lower case, e.g. order.amount",
                )
                continue
            if path in RESERVED_INPUTS:
                self.err(
                    where,
                    "reserved_name",
                    f"{path!r} is reserved: order.id and customer.id are recorded "
                    "identifiers, never rule inputs, and order.currency is checked against "
                    "the policy currency",
                )
                continue
            try:
                t = ex.parse_type(spec.type)
            except ValueError as e:
                self.err(where + ("type",), "unknown_type", str(e))
                self.unusable.add(path)
                continue
            optional = "default" in spec.model_fields_set
            default = spec.default
            if optional:
                default = self.coerce_default(where + ("default",), t, default, spec.min, spec.max)
            if (spec.min is not None or spec.max is not None) and not t.numeric:
                self.err(where, "invalid_bound", f"min/max apply to numbers, {path!r} is {t}")
            if spec.min is not None and spec.max is not None and spec.min > spec.max:
                self.err(where + ("max",), "invalid_bound", "max is below min")
            self.inputs[path] = InputDef(
                path, t, optional, default, spec.min, spec.max, spec.sensitive, spec.description
            )
            self.symbols[path] = t
        self.check_standard_inputs()

    def check_standard_inputs(self) -> None:
        """Inputs the decision itself reads must have the right types."""
        amount = self.inputs.get("order.amount")
        if amount is None or amount.type.kind != "money" or amount.optional:
            self.err(
                ("inputs",),
                "missing_input",
                "every policy declares order.amount as a required money input (deposits "
                "and the decision are computed from it)",
            )
        standard = {
            "order.payment_term_days": "int",
            "customer.credit_limit": "money",
            "customer.exposure": "money",
        }
        for path, kind in standard.items():
            d = self.inputs.get(path)
            if d is not None and d.type.kind != kind:
                self.err(("inputs", path), "type_mismatch", f"{path} must be {kind}, not {d.type}")

    def coerce_default(
        self, where: tuple, t: ex.Type, value: Any, spec_min=None, spec_max=None
    ) -> Any:
        bad = None
        if value is None:
            bad = "a default cannot be empty (null): give a value of the field's type"
        elif t.kind == "bool":
            bad = (
                None if isinstance(value, bool) else f"default must be true or false, got {value!r}"
            )
        elif t.kind == "int":
            bad = (
                None
                if isinstance(value, int) and not isinstance(value, bool)
                else f"default must be a whole number, got {value!r}"
            )
        elif t.numeric:
            if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
                bad = f"default must be a number, got {value!r}"
            else:
                value = Decimal(value)
                bad = self.default_range(t, value, spec_min, spec_max)
                if not bad and t.kind == "money":
                    value = value.quantize(Decimal(1).scaleb(-self.minor))
        elif t.kind == "enum":
            if value not in t.values:
                bad = f"default {value!r} is not one of {list(t.values)}"
        elif not isinstance(value, str):
            bad = f"default must be text, got {value!r}"
        if not bad and t.kind == "int":
            bad = self.default_range(t, value, spec_min, spec_max)
        if bad:
            self.err(where, "invalid_default", bad, offset=0)
        return value

    def default_range(self, t: ex.Type, value: Decimal, lo, hi) -> str | None:
        """Defaults obey the same rules as request values (engine/inputs.py)."""
        from rules.schema import MAX_NUMBER

        value = Decimal(value)
        places = {"money": self.minor, "int": 0, "decimal": 6}[t.kind]
        limit = MAX_NUMBER if t.kind != "decimal" else Decimal(10) ** 12
        if abs(value) >= limit:
            return f"default {value} is beyond the supported range (±{limit:,})"
        if value != round(value, places):
            return f"default {value} has more than {places} decimal places"
        if lo is not None and value < lo:
            return f"default {value} is below the input's min {lo}"
        if hi is not None and value > hi:
            return f"default {value} is above the input's max {hi}"
        return None

    def parse(self, where: tuple, text: Any) -> ex.Node | None:
        try:
            return ex.parse(text)
        except ex.ExprError as e:
            self.err(where, e.code, e.message, e.offset)
            return None

    def check_derived(self) -> list[DerivedDef]:
        out = []
        for name, spec in self.spec.derived.items():
            where = ("derived", name)
            if not name.isidentifier() or not name.islower():
                self.err(where, "invalid_name", f"derived name {name!r} must be a lower-case name")
                continue
            if name in self.symbols or name in STAGE_TWO_SYMBOLS:
                self.err(where, "duplicate_name", f"{name!r} is already defined")
                continue
            node = self.parse(where + ("expr",), spec.expr)
            if node is None:
                continue
            checker = ex.Checker(self.symbols, allow_division=True)
            checked = checker.check_value(node)
            for e in checker.errors:
                self.err(where + ("expr",), e.code, e.message, e.offset)
            if checker.errors:
                continue
            if checked.type.kind not in ("money", "int", "decimal"):
                self.err(
                    where + ("expr",),
                    "type_mismatch",
                    f"a derived value must be a number, got {checked.type}; put "
                    "conditions in a rule's 'when'",
                )
                continue
            if checked.divides and spec.if_zero_divisor is None:
                self.err(
                    where,
                    "missing_zero_divisor_result",
                    f"{name!r} divides by a field: state its value for a zero divisor "
                    "with if_zero_divisor (e.g. a limit of 0 means no credit)",
                )
                self.symbols[name] = ex.Type("decimal")  # keep checking rules that use it
                continue
            t = checked.type
            if checked.divides and t.kind == "int":
                t = ex.Type("decimal")
            self.symbols[name] = t
            out.append(
                DerivedDef(
                    name,
                    node,
                    t,
                    spec.if_zero_divisor if checked.divides else None,
                    spec.description,
                )
            )
        return out

    # -- rules ---------------------------------------------------------------------------

    def claim_id(self, rule_id: str, where: tuple) -> bool:
        if rule_id in self.ids:
            first = self.doc.at(self.ids[rule_id])
            self.err(
                where, "duplicate_id", f"rule id {rule_id!r} is already used at line {first.line}"
            )
            return False
        self.ids[rule_id] = where
        return True

    def condition(
        self, where: tuple, when: Any, stage_two: bool
    ) -> tuple[ex.Node | None, tuple, bool]:
        """Parse and check a ``when``; returns (node or None for always, reads, ok)."""
        if when is True:
            return None, (), True
        if when is False:
            return ex.Const(0, False), (), True
        node = self.parse(where, when)
        if node is None:
            return None, (), False
        checker = ex.Checker(self.symbols)
        checked = checker.check_condition(node)
        ok = True
        for e in checker.errors:
            msg = e.message
            name = msg.split("'")[1] if "'" in msg else ""
            if e.code == "unknown_field" and name in self.unusable:
                ok = False
                continue  # its declaration already has an error
            if e.code == "unknown_field" and not stage_two:
                if name in STAGE_TWO_SYMBOLS:
                    msg = (
                        f"{name!r} is not known yet: knock-outs and scorecard bins run "
                        "before the score and tier exist"
                    )
            self.err(where, e.code, msg, e.offset)
            ok = False
        return node, tuple(checked.fields), ok

    def check_rules(
        self,
        base: tuple,
        specs: list,
        stage: str,
        stage_two: bool,
        levels: list[Level] | None = None,
    ) -> None:
        level_names = [lv.level for lv in levels or []]
        for i, spec in enumerate(specs):
            where = base + (i,)
            self.claim_id(spec.id, where + ("id",))
            node, reads, ok = self.condition(where + ("when",), spec.when, stage_two)
            effect: dict[str, Any] = {}
            if stage == "deposit":
                effect, extra_ok = self.deposit_effect(where, spec)
                ok = ok and extra_ok
                if "deposit_amount" in effect:
                    reads = tuple(
                        dict.fromkeys(reads + tuple(ex.fields_of(effect["deposit_amount"])))
                    )
            elif stage == "term":
                effect = {"max_payment_term_days": spec.max_payment_term_days}
            elif stage == "referral":
                if spec.min_level is not None and spec.min_level not in level_names:
                    self.err(
                        where + ("min_level",),
                        "unknown_level",
                        f"{spec.min_level!r} is not an escalation level"
                        + ex.suggest(spec.min_level, level_names),
                    )
                    ok = False
                effect = {"min_level": spec.min_level}
            if ok:
                self.rules.append(
                    Rule(spec.id, stage, spec.description, spec.reason_code, node, reads, effect)
                )

    def deposit_effect(self, where: tuple, spec) -> tuple[dict, bool]:
        has_pct, has_amt = spec.deposit_pct is not None, spec.deposit_amount is not None
        if has_pct == has_amt:
            self.err(
                where,
                "deposit_effect",
                "a deposit rule needs exactly one of deposit_pct or deposit_amount",
            )
            return {}, False
        if has_pct:
            return {"deposit_pct": spec.deposit_pct}, True
        node = self.parse(where + ("deposit_amount",), spec.deposit_amount)
        if node is None:
            return {}, False
        checker = ex.Checker(self.symbols)
        checked = checker.check_value(node)
        for e in checker.errors:
            self.err(where + ("deposit_amount",), e.code, e.message, e.offset)
        if checker.errors:
            return {}, False
        if checked.type.kind != "money":
            self.err(
                where + ("deposit_amount",),
                "type_mismatch",
                f"deposit_amount must be money, got {checked.type}",
            )
            return {}, False
        return {"deposit_amount": node}, True

    # -- scorecard, tiers, escalation ------------------------------------------------------

    def check_scorecard(self) -> tuple[list[Factor], int, int]:
        sc = self.spec.scorecard
        factors = []
        lo = hi = sc.base_points
        for i, f in enumerate(sc.factors):
            where = ("scorecard", "factors", i)
            self.claim_id(f.id, where + ("id",))
            t = self.symbols.get(f.field)
            if t is None and f.field in self.unusable:
                continue  # its declaration already has an error
            if t is None:
                self.err(
                    where + ("field",),
                    "unknown_field",
                    f"{f.field!r} is not a declared input or derived value"
                    + ex.suggest(f.field, self.symbols),
                )
                continue
            bins = self.factor_bins(where, f, t)
            if bins is None:
                continue
            ids = []
            for j, (cond, b) in enumerate(bins):
                bin_id = f"{f.id}.{j + 1}"
                # a rule elsewhere may not take a bin's generated id (it would replace it)
                self.claim_id(bin_id, where + ("bins", j))
                ids.append(bin_id)
                label = b.label or _bin_label(b)
                self.rules.append(
                    Rule(
                        bin_id,
                        "scorecard",
                        f"{f.description}: {label}",
                        f.reason_code,
                        cond,
                        (f.field,),
                        {"factor": f.id, "points": b.points, "bin": label},
                    )
                )
            points = [b.points for b in f.bins]
            lo += min(points)
            hi += max(points)
            factors.append(
                Factor(
                    f.id,
                    f.description,
                    f.reason_code,
                    f.field,
                    tuple(ids),
                    max(points),
                    min(points),
                )
            )
        return factors, lo, hi

    def factor_bins(self, where: tuple, f, t: ex.Type):
        fld = ex.Field(0, f.field)
        out = []
        if t.numeric:
            prev_below: Decimal | None = None
            for j, b in enumerate(f.bins):
                bw = where + ("bins", j)
                if b.in_ is not None:
                    self.err(bw, "invalid_bin", f"{f.field!r} is a number: use from/below, not in")
                    return None
                if j == 0 and b.from_ is not None:
                    self.err(
                        bw,
                        "bin_gap",
                        f"the first bin must have no 'from' so that values "
                        f"below {b.from_} score too",
                    )
                    return None
                if j > 0 and b.from_ != prev_below:
                    self.err(
                        bw,
                        "bin_gap" if b.from_ is None or b.from_ > prev_below else "bin_overlap",
                        f"bin starts at {b.from_} but the previous bin ends below {prev_below}: "
                        "bins must follow each other without gaps or overlaps",
                    )
                    return None
                last = j == len(f.bins) - 1
                if not last and b.below is None:
                    self.err(bw, "bin_overlap", "only the last bin may be open-ended (no 'below')")
                    return None
                if last and b.below is not None:
                    self.err(
                        bw,
                        "bin_gap",
                        f"the last bin must have no 'below' so that values "
                        f"of {b.below} and above score too",
                    )
                    return None
                if b.from_ is not None and b.below is not None and b.below <= b.from_:
                    self.err(bw, "bin_overlap", "'below' must be greater than 'from'")
                    return None
                parts: list[ex.Node] = []
                if b.from_ is not None:
                    parts.append(ex.Cmp(0, ">=", fld, ex.Lit(0, b.from_)))
                if b.below is not None:
                    parts.append(ex.Cmp(0, "<", fld, ex.Lit(0, b.below)))
                cond = (
                    None
                    if not parts
                    else parts[0]
                    if len(parts) == 1
                    else ex.BoolOp(0, "and", tuple(parts))
                )
                out.append((cond, b))
                prev_below = b.below
            return out
        domain: list[Any]
        if t.kind == "enum":
            domain = list(t.values)
        elif t.kind == "bool":
            domain = [True, False]
        else:
            self.err(
                where + ("field",),
                "invalid_bin",
                f"{f.field!r} is {t}: a factor needs a number, enum or bool field",
            )
            return None
        seen: dict[Any, int] = {}
        for j, b in enumerate(f.bins):
            bw = where + ("bins", j)
            if b.in_ is None or b.from_ is not None or b.below is not None:
                self.err(bw, "invalid_bin", f"{f.field!r} is {t}: give each bin an 'in' list")
                return None
            for k, v in enumerate(b.in_):
                if v not in domain or (t.kind == "bool") != isinstance(v, bool):
                    self.err(
                        bw + ("in", k),
                        "unknown_enum_value",
                        f"{v!r} is not one of {domain}"
                        + ex.suggest(str(v), [str(d) for d in domain]),
                    )
                    return None
                if v in seen:
                    self.err(
                        bw + ("in", k), "bin_overlap", f"{v!r} is already in bin {seen[v] + 1}"
                    )
                    return None
                seen[v] = j
            lits = tuple(ex.Lit(0, v) for v in b.in_)
            out.append((ex.In(0, fld, lits, False), b))
        missing = [v for v in domain if v not in seen]
        if missing:
            self.err(where + ("bins",), "bin_gap", f"no bin scores {missing}")
            return None
        return out

    def check_tiers(self, lo: int, hi: int) -> list[Tier]:
        tiers = []
        names: set[str] = set()
        for i, t in enumerate(self.spec.tiers):
            where = ("tiers", i)
            if t.tier in names:
                self.err(where + ("tier",), "duplicate_id", f"tier {t.tier!r} is defined twice")
            names.add(t.tier)
            if t.min_score > t.max_score:
                self.err(
                    where, "tier_range", f"min_score {t.min_score} is above max_score {t.max_score}"
                )
            if t.auto_approve_up_to != t.auto_approve_up_to.quantize(
                Decimal(1).scaleb(-self.minor)
            ):
                self.err(
                    where + ("auto_approve_up_to",),
                    "invalid_value",
                    f"more decimals than {self.spec.currency} has ({self.minor})",
                )
            tiers.append(
                Tier(
                    t.tier,
                    t.min_score,
                    t.max_score,
                    t.max_payment_term_days,
                    t.deposit_pct,
                    t.auto_approve_up_to,
                    t.description,
                )
            )
        if any(e.code == "tier_range" for e in self.errors):
            return tiers
        order = sorted(range(len(tiers)), key=lambda k: tiers[k].min_score)
        expect = lo
        for k in order:
            t = tiers[k]
            if t.min_score > expect and expect <= hi:
                self.err(
                    ("tiers", k, "min_score"),
                    "tier_gap",
                    f"scores {expect}..{min(t.min_score - 1, hi)} fall in no tier "
                    f"(scores run from {lo} to {hi})",
                )
            elif t.min_score < expect and k != order[0]:
                self.err(
                    ("tiers", k, "min_score"),
                    "tier_overlap",
                    f"tier {t.tier!r} starts at {t.min_score}, inside the previous band "
                    f"(which ends at {expect - 1})",
                )
            expect = max(expect, t.max_score + 1)
        first = tiers[order[0]]
        if first.min_score > lo:
            pass  # reported as a gap above
        if expect <= hi:
            self.err(
                ("tiers",),
                "tier_gap",
                f"scores {expect}..{hi} fall in no tier (scores run from {lo} to {hi})",
            )
        return tiers

    def check_escalation(self) -> list[Level]:
        esc = self.spec.escalation
        basis_t = self.symbols.get(esc.basis)
        if basis_t is None or basis_t.kind != "money":
            self.err(
                ("escalation", "basis"),
                "invalid_basis",
                f"escalation basis {esc.basis!r} must be a money input or derived value"
                + (ex.suggest(esc.basis, self.symbols) if basis_t is None else ""),
            )
        levels = []
        prev = None
        seen = set()
        for i, lv in enumerate(esc.levels):
            where = ("escalation", "levels", i)
            if lv.level in seen:
                self.err(where + ("level",), "duplicate_id", f"level {lv.level!r} is defined twice")
            seen.add(lv.level)
            last = i == len(esc.levels) - 1
            if lv.up_to is None and not last:
                self.err(
                    where, "escalation_order", "only the last (highest) level may have no up_to"
                )
            if lv.up_to is not None and last:
                self.err(
                    where + ("up_to",),
                    "escalation_open_end",
                    "the last level must have no up_to: someone must be able to decide any amount",
                )
            if lv.up_to is not None and prev is not None and lv.up_to <= prev:
                self.err(
                    where + ("up_to",),
                    "escalation_order",
                    f"up_to {lv.up_to} must be above the previous level's {prev}",
                )
            if lv.up_to is not None:
                prev = lv.up_to
            levels.append(Level(lv.level, lv.up_to, lv.sla_hours, lv.description))
        return levels

    def stage_two_symbols(self, tiers: list[Tier]) -> None:
        names = tuple(dict.fromkeys(t.tier for t in tiers))
        self.symbols.update(
            {
                "score": ex.Type("int"),
                "tier": ex.Type("enum", names),
                "tier_max_payment_term_days": ex.Type("int"),
                "tier_deposit_pct": ex.Type("decimal"),
                "tier_auto_approve_up_to": ex.Type("money"),
            }
        )


def _bin_label(b) -> str:
    if b.in_ is not None:
        return "in " + ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in b.in_)
    if b.from_ is None:
        return f"below {b.below}"
    if b.below is None:
        return f"{b.from_} and above"
    return f"{b.from_} to below {b.below}"
