"""Decision-engine benchmark: one run, one table.

Rows: the shipped ``policies.yaml`` (requests replayed from the accounts-receivable sample)
and generated policies of 100, 1000 and 5000 rules (requests generated with a fixed seed).

Columns per row (see benchmarks/README.md):

- rules, load+validate+compile (ms), first registration in durable_rules (ms);
- (a) ``full``: ``engine.evaluate.evaluate(compiled, request)`` — the whole decision with trail;
- (b) ``raw``: ``adapter.match`` on the stage-1 and stage-2 facts, pre-built once per request
  through the same code path as ``evaluate`` (``validate`` → ``derive`` → ``_fact``);
- (c) ``zen``: GoRules zen-engine evaluating a JDM decision table (hit policy ``collect``)
  holding the same rules, over the same facts flattened into one input object;
- (d) ``py``: a tiny plain-Python interpreter of the compiled durable JSON conditions over the
  same facts (the lower bound);
- ratios full/zen and full/raw (mean time per request).

Run from the repository root::

    .venv/bin/python benchmarks/engine.py            # full run (a few minutes)
    .venv/bin/python benchmarks/engine.py --quick    # smoke run (seconds)
    .venv/bin/python benchmarks/engine.py --profile  # also cProfile the full decision
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import gc
import io
import itertools
import json
import os
import platform
import pstats
import random
import sys
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as ``python benchmarks/engine.py``, this file's folder comes first on sys.path and this
# module would shadow the ``engine`` package: drop the folder, put the repository root first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "examples" / "receivables"))

import zen  # noqa: E402

from engine import adapter  # noqa: E402
from engine.evaluate import _fact, _runtime, evaluate  # noqa: E402
from rules.compile import CompiledPolicy, compile_policy  # noqa: E402
from rules.validate import load_policy_text  # noqa: E402

SHIPPED = ROOT / "policies.yaml"
AR_CSV = ROOT.parent / "shared" / "data" / "ar-invoices" / "accounts-receivable.csv"
SEED = 20261129

# ---------------------------------------------------------------------------------------
# Generated requests
# ---------------------------------------------------------------------------------------
ENUMS = {
    "customer.risk_class": ("low", "medium", "high"),
    "customer.country_risk": ("low", "medium", "high"),
    "customer.industry": (
        "manufacturing", "retail", "wholesale", "construction",
        "services", "transport", "energy", "agriculture",
    ),
    "customer.legal_form": ("sole_trader", "partnership", "limited", "public"),
    "order.channel": ("web", "edi", "sales_rep"),
    "order.product_line": ("standard", "custom", "service", "spare_parts"),
}
ENUM_WEIGHTS = {
    "customer.risk_class": (5, 3, 2),
    "customer.country_risk": (7, 2, 1),
    "customer.industry": (4, 3, 3, 2, 3, 2, 1, 1),
    "customer.legal_form": (2, 2, 5, 1),
    "order.channel": (3, 5, 2),
    "order.product_line": (6, 2, 1, 2),
}
# path -> (type, yaml spec). Order is the YAML order.
INPUTS: dict[str, tuple[str, str]] = {
    "order.amount": ("money", "{type: money, min: 0.01}"),
    "order.payment_term_days": ("int", "{type: int, min: 0, max: 365}"),
    "order.channel": ("enum", "{type: \"enum[web, edi, sales_rep]\", default: edi}"),
    "order.product_line": (
        "enum", "{type: \"enum[standard, custom, service, spare_parts]\"}"),
    "customer.credit_limit": ("money", "{type: money, min: 0}"),
    "customer.exposure": ("money", "{type: money, min: 0}"),
    "customer.overdue_amount": ("money", "{type: money, min: 0, default: 0}"),
    "customer.annual_revenue": ("money", "{type: money, min: 0, default: 0}"),
    "customer.collateral": ("money", "{type: money, min: 0, default: 0}"),
    "customer.days_past_due": ("int", "{type: int, min: 0, default: 0}"),
    "customer.disputed_invoices": ("int", "{type: int, min: 0, default: 0}"),
    "customer.open_orders": ("int", "{type: int, min: 0, default: 0}"),
    "customer.employees": ("int", "{type: int, min: 0, default: 0}"),
    "customer.years_in_business": ("decimal", "{type: decimal, min: 0}"),
    "customer.avg_days_late": ("decimal", "{type: decimal, min: 0, default: 0}"),
    "customer.payment_index": ("decimal", "{type: decimal, min: 0, max: 100, default: 50}"),
    "customer.equity_ratio": ("decimal", "{type: decimal, default: 0.3}"),
    "customer.risk_class": ("enum", "{type: \"enum[low, medium, high]\"}"),
    "customer.country_risk": (
        "enum", "{type: \"enum[low, medium, high]\", default: low}"),
    "customer.industry": ("enum", "{type: \"enum[" + ", ".join(
        ENUMS["customer.industry"]) + "]\"}"),
    "customer.legal_form": (
        "enum", "{type: \"enum[sole_trader, partnership, limited, public]\", default: limited}"),
    "customer.new_customer": ("bool", "{type: bool, default: false}"),
    "customer.guarantee": ("bool", "{type: bool, default: false}"),
    "customer.blacklisted": ("bool", "{type: bool, default: false}"),
    "customer.in_litigation": ("bool", "{type: bool, default: false}"),
    "customer.insolvency": ("bool", "{type: bool, default: false}"),
}
DERIVED: dict[str, tuple[str, str]] = {
    "exposure_after": ("money", "{expr: customer.exposure + order.amount}"),
    "available_credit": ("money", "{expr: customer.credit_limit - exposure_after}"),
    "over_limit_amount": ("money", "{expr: exposure_after - customer.credit_limit}"),
    "utilisation": (
        "decimal", "{expr: exposure_after / customer.credit_limit, if_zero_divisor: 999}"),
    "overdue_share": (
        "decimal", "{expr: customer.overdue_amount / customer.exposure, if_zero_divisor: 0}"),
    "order_to_revenue": (
        "decimal", "{expr: order.amount / customer.annual_revenue, if_zero_divisor: 999}"),
}
KINDS = {p: t for p, (t, _) in {**INPUTS, **DERIVED}.items()}
NUMERIC = [p for p, t in KINDS.items() if t in ("money", "int", "decimal")]
BOOLS = ["customer.new_customer", "customer.guarantee"]
RARE_BOOLS = ["customer.blacklisted", "customer.in_litigation", "customer.insolvency"]


def _money(x: float) -> str:
    return f"{max(x, 0):.2f}"


def generate_request(rng: random.Random, i: int) -> dict[str, Any]:
    """One plausible B2B order request (nested, money as 2-decimal strings)."""
    limit = 0.0 if rng.random() < 0.03 else rng.lognormvariate(10.8, 1.0)
    exposure = limit * rng.uniform(0, 1.25) if limit else rng.lognormvariate(7, 1.5)
    amount = max(0.01, rng.lognormvariate(8.3, 1.3))
    overdue = exposure * rng.uniform(0, 0.7) if rng.random() < 0.3 else 0.0
    dpd = rng.randint(1, 150) if overdue > 0 else 0
    customer: dict[str, Any] = {
        "id": f"C{i % 997:04d}",
        "credit_limit": _money(limit),
        "exposure": _money(exposure),
        "overdue_amount": _money(overdue),
        "annual_revenue": _money(0 if rng.random() < 0.05 else rng.lognormvariate(14.5, 1.2)),
        "collateral": _money(0 if rng.random() < 0.7 else rng.lognormvariate(10, 1)),
        "days_past_due": dpd,
        "disputed_invoices": rng.choice((0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 5)),
        "open_orders": rng.randint(0, 20),
        "employees": int(rng.lognormvariate(3.5, 1.5)),
        "years_in_business": f"{rng.uniform(0, 40):.2f}",
        "avg_days_late": f"{rng.expovariate(1 / 6):.2f}",
        "payment_index": f"{rng.uniform(0, 100):.2f}",
        "equity_ratio": f"{rng.uniform(-0.2, 0.8):.4f}",
        "new_customer": rng.random() < 0.15,
        "guarantee": rng.random() < 0.2,
        "blacklisted": rng.random() < 0.01,
        "in_litigation": rng.random() < 0.02,
        "insolvency": rng.random() < 0.01,
    }
    order: dict[str, Any] = {
        "id": f"O{i:07d}",
        "amount": _money(amount),
        "currency": "EUR",
        "payment_term_days": rng.choice((0, 14, 30, 30, 30, 45, 60, 60, 90, 120)),
    }
    for path, values in ENUMS.items():
        group, name = path.split(".")
        (customer if group == "customer" else order)[name] = rng.choices(
            values, ENUM_WEIGHTS[path])[0]
    # optional fields are sometimes left out (their defaults apply)
    for name in ("overdue_amount", "collateral", "employees", "guarantee", "country_risk",
                 "legal_form", "insolvency", "in_litigation"):
        if rng.random() < 0.1:
            customer.pop(name, None)
    if rng.random() < 0.1:
        order.pop("channel")
    return {"order": order, "customer": customer}


def _flat_values(req: dict[str, Any]) -> dict[str, float]:
    """Numeric inputs and derived values of a generated request, as floats (for thresholds)."""
    v: dict[str, float] = {}
    for path, (kind, spec) in INPUTS.items():
        if kind not in ("money", "int", "decimal"):
            continue
        group, name = path.split(".")
        raw = req[group].get(name)
        if raw is None:
            raw = 0 if "default: 0," in spec or "default: 0}" in spec else (
                50 if "default: 50" in spec else 0.3)
        v[path] = float(raw)
    v["exposure_after"] = v["customer.exposure"] + v["order.amount"]
    v["available_credit"] = v["customer.credit_limit"] - v["exposure_after"]
    v["over_limit_amount"] = -v["available_credit"]
    lim, exp, rev = v["customer.credit_limit"], v["customer.exposure"], v[
        "customer.annual_revenue"]
    v["utilisation"] = v["exposure_after"] / lim if lim else 999.0
    v["overdue_share"] = v["customer.overdue_amount"] / exp if exp else 0.0
    v["order_to_revenue"] = v["order.amount"] / rev if rev else 999.0
    return v


# ---------------------------------------------------------------------------------------
# Generated policies
# ---------------------------------------------------------------------------------------
MONEY_PAIRS = (
    "exposure_after > customer.credit_limit",
    "customer.overdue_amount > order.amount",
    "order.amount > customer.collateral",
    "order.amount > customer.credit_limit * {k}",
    "exposure_after > customer.credit_limit * {k}",
    "customer.overdue_amount * 4 > customer.exposure",
    "order.amount > customer.annual_revenue * {r}",
    "exposure_after > customer.collateral + customer.credit_limit",
)
INT_PAIRS = (
    "customer.days_past_due > order.payment_term_days",
    "customer.disputed_invoices * 4 > customer.open_orders",
)
STAGE2_PAIRS = (
    "order.amount > tier_auto_approve_up_to",
    "order.payment_term_days > tier_max_payment_term_days",
)


class _Gen:
    """Builds conditions whose match rate is steered by quantiles of sample requests."""

    def __init__(self, rng: random.Random, sample: list[dict[str, float]]):
        self.rng = rng
        self.sorted = {p: sorted(s[p] for s in sample) for p in NUMERIC}
        self.score_range = (0, 1)

    def literal(self, path: str, x: float) -> str:
        kind = KINDS[path]
        if kind == "int":
            return str(int(round(x)))
        if kind == "money":
            return f"{x:.2f}"
        if path in DERIVED:
            return f"{x:.3f}"
        return f"{x:.2f}"

    def quantile(self, path: str, q: float) -> float:
        s = self.sorted[path]
        return s[min(len(s) - 1, max(0, int(q * len(s))))]

    def numeric(self, p: float) -> str:
        """``field op literal`` true for about a share ``p`` of the sample requests: of a few
        random fields and both directions, the threshold whose sample rate is closest to
        ``p`` (many fields have ties, e.g. ``customer.overdue_amount`` is mostly 0)."""
        best: tuple[float, str] = (2.0, "")
        for _ in range(4):
            path = self.rng.choice(NUMERIC)
            s = self.sorted[path]
            if self.rng.random() < 0.5:
                lit = self.literal(path, self.quantile(path, 1 - p))
                x = float(lit)
                rates = {">": 1 - bisect.bisect_right(s, x) / len(s),
                         ">=": 1 - bisect.bisect_left(s, x) / len(s)}
            else:
                lit = self.literal(path, self.quantile(path, p))
                x = float(lit)
                rates = {"<": bisect.bisect_left(s, x) / len(s),
                         "<=": bisect.bisect_right(s, x) / len(s)}
            for op, rate in rates.items():
                err = abs(rate - p) / p
                if err < best[0]:
                    best = (err, f"{path} {op} {lit}")
            if best[0] < 0.25:
                break
        return best[1]

    def enum(self, p: float) -> str:
        path = self.rng.choice(list(ENUMS))
        values = ENUMS[path]
        k = max(1, min(len(values) - 1, round(p * len(values))))
        chosen = self.rng.sample(values, k)
        r = self.rng.random()
        if k == 1 and r < 0.5:
            return f'{path} == "{chosen[0]}"'
        if r < 0.85:
            return f"{path} in [{', '.join(json.dumps(c) for c in chosen)}]"
        rest = [v for v in values if v not in chosen]
        return f"{path} not in [{', '.join(json.dumps(c) for c in rest)}]"

    def pair(self, stage2: bool) -> str:
        pool = MONEY_PAIRS + INT_PAIRS + (STAGE2_PAIRS if stage2 else ())
        text = self.rng.choice(pool)
        return text.format(k=self.rng.choice(("0.1", "0.25", "0.5", "0.8", "1.1")),
                           r=self.rng.choice(("0.01", "0.02", "0.05")))

    def stage2(self) -> str:
        lo, hi = self.score_range
        r = self.rng.random()
        if r < 0.4:
            cut = self.rng.randint(lo + (hi - lo) // 4, lo + 3 * (hi - lo) // 4)
            return f"score {self.rng.choice(('<', '>='))} {cut}"
        if r < 0.6:
            a = self.rng.randint(lo + (hi - lo) // 4, lo + 2 * (hi - lo) // 3)
            return f"{a} <= score < {a + max(5, (hi - lo) // 8)}"
        if r < 0.8:
            return f"tier in {json.dumps(self.rng.sample(['B', 'C', 'D'], 2))}"
        return f'tier == "{self.rng.choice("ABCD")}"'

    def atom(self, p: float, stage2: bool) -> str:
        r = self.rng.random()
        if stage2 and r < 0.15:
            return self.stage2()
        if r < 0.55:
            return self.numeric(p)
        if r < 0.75:
            return self.enum(p)
        if r < 0.88:
            return self.pair(stage2)
        b = self.rng.choice(BOOLS)
        return b if self.rng.random() < 0.5 else f"not {b}"

    def condition(self, stage2: bool) -> str:
        r = self.rng.random()
        if r < 0.40:
            return self.atom(self.rng.uniform(0.05, 0.6), stage2)
        if r < 0.70:
            return " and ".join(self.atom(self.rng.uniform(0.3, 0.9), stage2) for _ in "ab")
        if r < 0.80:
            return " and ".join(self.atom(self.rng.uniform(0.5, 0.95), stage2) for _ in "abc")
        if r < 0.92:
            return " or ".join(self.atom(self.rng.uniform(0.03, 0.3), stage2) for _ in "ab")
        a, b = (self.atom(self.rng.uniform(0.05, 0.4), stage2) for _ in "ab")
        return f"({a} or {b}) and {self.atom(self.rng.uniform(0.4, 0.9), stage2)}"

    def rare(self, p: float, stage2: bool = False) -> str:
        """A condition true for about a share ``p`` of requests (a threshold, or a threshold
        and a more common atom)."""
        p = max(0.0002, min(0.95, p))
        if p < 0.05 or self.rng.random() < 0.6:
            return self.numeric(p)
        return f"{self.numeric(p / 0.5)} and {self.atom(0.5, stage2)}"

    def bins(self, path: str) -> list[str]:
        kind = KINDS[path]
        if kind == "bool":
            hi = self.rng.randrange(10, 60, 5)
            return [f"{{in: [false], points: {hi}}}", "{in: [true], points: 0}"]
        if kind == "enum":
            values = list(ENUMS[path])
            self.rng.shuffle(values)
            k = self.rng.randint(2, min(4, len(values)))
            cuts = sorted(self.rng.sample(range(1, len(values)), k - 1))
            groups = [values[a:b] for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True)]
            return [f"{{in: [{', '.join(g)}], points: {self.rng.randrange(0, 80, 5)}}}"
                    for g in groups]
        k = self.rng.randint(3, 6)
        edges: list[str] = []
        for j in range(1, k):
            lit = self.literal(path, self.quantile(path, j / k))
            if not edges or Decimal(lit) > Decimal(edges[-1]):
                edges.append(lit)
        if not edges:
            edges = [self.literal(path, self.quantile(path, 0.5) + 1)]
        up = self.rng.random() < 0.5
        pts = sorted(self.rng.randrange(0, 80, 5) for _ in range(len(edges) + 1))
        if not up:
            pts.reverse()
        out = [f"{{below: {edges[0]}, points: {pts[0]}}}"]
        for j in range(1, len(edges)):
            out.append(f"{{from: {edges[j - 1]}, below: {edges[j]}, points: {pts[j]}}}")
        out.append(f"{{from: {edges[-1]}, points: {pts[-1]}}}")
        return out


def generate_policy(n_rules: int, seed: int) -> str:
    """Valid policy YAML with exactly ``n_rules`` rules (scorecard bins included): about 10 %
    scorecard bins, then knock-outs, declines, deposits, term caps and referrals."""
    rng = random.Random(seed * 7919 + n_rules)
    srng = random.Random(seed + 1)
    gen = _Gen(rng, [_flat_values(generate_request(srng, i)) for i in range(10_000)])
    lines = [
        f"policy: generated-{n_rules}",
        'version: "1"',
        "currency: EUR",
        f"description: Generated benchmark policy with {n_rules} rules",
        "inputs:",
        *(f"  {p}: {spec}" for p, (_, spec) in INPUTS.items()),
        "derived:",
        *(f"  {p}: {spec}" for p, (_, spec) in DERIVED.items()),
        "scorecard:",
        "  base_points: 100",
        "  max_reasons: 4",
        "  factors:",
    ]
    factor_fields = NUMERIC + list(ENUMS) + BOOLS
    n_bins, lo, hi, f = 0, 100, 100, 0
    target_bins = min(max(10, n_rules // 10), 180)  # at most ~40 factors
    while n_bins < target_bins or f < 3:
        path = factor_fields[f % len(factor_fields)] if f < len(factor_fields) else rng.choice(
            factor_fields)
        bins = gen.bins(path)
        if n_bins + len(bins) > target_bins + 6 and f >= 3:
            bins = bins[:2] if KINDS[path] == "bool" else bins
        pts = [int(b.split("points: ")[1].rstrip("}")) for b in bins]
        lo, hi = lo + min(pts), hi + max(pts)
        n_bins += len(bins)
        f += 1
        lines += [f"    - id: SC_F{f:03d}", f"      description: Factor {f} on {path}",
                  f"      reason_code: SC_F{f:03d}", f"      field: {path}", "      bins:"]
        lines += [f"        - {b}" for b in bins]
    gen.score_range = (lo, hi)
    span = hi - lo
    c1, c2, c3 = lo + span * 3 // 4, lo + span // 2, lo + span // 3
    lines += [
        "tiers:",
        f"  - {{tier: A, min_score: {c1}, max_score: {hi}, max_payment_term_days: 90, "
        "deposit_pct: 0, auto_approve_up_to: 250000}",
        f"  - {{tier: B, min_score: {c2}, max_score: {c1 - 1}, max_payment_term_days: 60, "
        "deposit_pct: 0, auto_approve_up_to: 100000}",
        f"  - {{tier: C, min_score: {c3}, max_score: {c2 - 1}, max_payment_term_days: 30, "
        "deposit_pct: 20, auto_approve_up_to: 25000}",
        f"  - {{tier: D, min_score: {lo}, max_score: {c3 - 1}, max_payment_term_days: 0, "
        "deposit_pct: 50, auto_approve_up_to: 5000}",
    ]
    rest = n_rules - n_bins
    n_ko, n_dec, n_dep, n_term = (max(1, rest * s // 100) for s in (9, 5, 22, 22))
    n_ref = rest - n_ko - n_dec - n_dep - n_term
    # Knock-outs, declines and referrals are tuned so that about 6 %, 4 % and 30 % of the
    # requests hit at least one of them; deposit and term rules match often (they only
    # tighten the conditions). Scorecard factors match one bin each.

    def rule(prefix: str, i: int, when: str, extra: str = "") -> list[str]:
        rid = f"{prefix}_{i:04d}"
        out = [f"  - id: {rid}", f"    description: Generated rule {rid}",
               f"    reason_code: {rid}", f"    when: {json.dumps(when)}"]
        return out + ([f"    {extra}"] if extra else [])

    lines.append("knockouts:")
    for i in range(n_ko):
        when = RARE_BOOLS[i] if i < len(RARE_BOOLS) else gen.rare(0.03 / n_ko)
        lines += rule("KO", i, when)
    lines.append("declines:")
    for i in range(n_dec):
        when = (f"score < {lo + span // 6}" if i == 0 else
                f"{gen.stage2()} and {gen.rare(0.1 / n_dec)}")
        lines += rule("DEC", i, when)
    lines.append("deposits:")
    for i in range(n_dep):
        if rng.random() < 0.2:
            amount = rng.choice(("over_limit_amount", "order.amount * 0.1",
                                 "customer.overdue_amount", "order.amount * 0.25"))
            extra = f"deposit_amount: {json.dumps(amount)}"
        else:
            extra = f"deposit_pct: {rng.choice((5, 10, 15, 20, 25, 30, 40, 50))}"
        lines += rule("DEP", i, gen.condition(True), extra)
    lines += ["terms:", "  over_cap: cap", "  over_cap_reason_code: TERM_CAPPED", "  rules:"]
    for i in range(n_term):
        days = rng.choice((0, 15, 30, 45, 60))
        lines += ["  " + x for x in rule("TERM", i, gen.condition(True),
                                          f"max_payment_term_days: {days}")]
    lines.append("referrals:")
    for i in range(n_ref):
        extra = "min_level: credit_manager" if rng.random() < 0.1 else ""
        # tail thresholds are correlated (the same extreme requests pass many of them), so
        # the per-rule rate grows with the rule count to keep ~30 % of requests referred
        p_ref = 0.6 * (1 + n_ref / 100) / n_ref
        when = gen.rare(p_ref, True)
        if rng.random() < 0.5:
            when = f"({gen.condition(True)}) and {gen.rare(2 * p_ref, True)}"
        lines += rule("REF", i, when, extra)
    lines += [
        "escalation:",
        "  basis: order.amount",
        "  levels:",
        "    - {level: credit_analyst, up_to: 100000, sla_hours: 4}",
        "    - {level: credit_manager, up_to: 1000000, sla_hours: 8}",
        "    - {level: general_manager, sla_hours: 48}",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Facts (same code path as engine.evaluate.evaluate)
# ---------------------------------------------------------------------------------------
def build_facts(compiled: CompiledPolicy, request: dict[str, Any]) -> tuple[dict, dict]:
    """Stage-1 and stage-2 facts exactly as ``evaluate`` builds them (stage 2 needs the
    stage-1 match for the score and tier, so stage 1 is matched once here)."""
    runtime = _runtime(compiled)
    inputs, _ = compiled.validate(request)
    env = dict(inputs)
    compiled.derive(env)
    f1 = _fact(compiled, compiled.groups["s1"], env)
    h1 = runtime["handles"].get("s1")
    m1 = runtime["engine"].match(h1, f1) if h1 is not None else frozenset()
    env.update(compiled.scorecard.stage_two_values(compiled.scorecard(set(m1))))
    f2 = _fact(compiled, compiled.groups["s2"], env)
    return f1, f2


# ---------------------------------------------------------------------------------------
# (c) zen-engine: JDM decision table with hit policy "collect"
# ---------------------------------------------------------------------------------------
def _zen_name(compiled: CompiledPolicy, group: str, key: str) -> str:
    """Flat input name: field keys are shared by both stages, term keys are per stage."""
    return key if key.startswith("f") else f"{group}_{key}"


def zen_input(compiled: CompiledPolicy, facts: tuple[dict, dict]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for group, fact in zip(("s1", "s2"), facts, strict=True):
        for k, v in fact.items():
            flat[_zen_name(compiled, group, k)] = v
    return flat


_ZEN_CMP = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<=", "$neq": "!="}


def _zlit(v: int | str) -> str:
    return json.dumps(v)


def _leaf(cond: dict) -> tuple[str, str, Any] | None:
    """(field, op, value) of a durable leaf, or None for $and/$or."""
    ((k, v),) = cond.items()
    if k in _ZEN_CMP:
        ((f, x),) = v.items()
        return f, _ZEN_CMP[k], x
    if k in ("$and", "$or"):
        return None
    return k, "==", v


def _zexpr(cond: Any, name: Callable[[str], str]) -> str:
    """Full zen expression of a durable condition."""
    leaf = _leaf(cond)
    if leaf is not None:
        f, op, x = leaf
        return f"{name(f)} {op} {_zlit(x)}"
    ((k, parts),) = cond.items()
    joiner = " and " if k == "$and" else " or "
    return "(" + joiner.join(_zexpr(p, name) for p in parts) + ")"


def zen_table(compiled: CompiledPolicy, layout: str = "expression") -> dict:
    """JDM graph (input → decision table → output) holding every compiled rule, one row per
    rule whose output ``rule`` is the rule id.

    ``layout="expression"``: one field-less input column; each rule's condition is one full
    zen expression (``f5 > 30 or f18 > 500000``).
    ``layout="columns"``: the classic decision-table look: one column per fact field;
    top-level conjuncts on one field become unary cells in that field's column (``> 9000``,
    ``"low", "medium"``, ``$ >= 2 and $ < 5``); anything spanning fields (an ``or``) goes to
    a field-less column as a full expression."""
    columns: dict[str, dict] = {}
    rows = []
    for group_name, group in compiled.groups.items():
        def name(k: str, g: str = group_name) -> str:
            return _zen_name(compiled, g, k)

        for rid, cond in group.rules.items():
            row = {"_id": rid, "out": json.dumps(rid)}
            rows.append(row)
            if layout == "expression":
                if cond is not True:
                    row["c_expr"] = _zexpr(cond, name)
                continue
            cells: dict[str, list[tuple[str, str]]] = {}
            rest: list[str] = []
            conjuncts = [] if cond is True else (
                cond["$and"] if "$and" in cond else [cond])
            for c in conjuncts:
                leaf = _leaf(c)
                if leaf is not None:
                    f, op, x = leaf
                    cells.setdefault(name(f), []).append((op, _zlit(x)))
                    continue
                ((k, parts),) = c.items()
                leaves = [_leaf(p) for p in parts]
                if k == "$or" and all(lf and lf[1] == "==" for lf in leaves) and len(
                        {lf[0] for lf in leaves}) == 1:
                    cells.setdefault(name(leaves[0][0]), []).append(
                        ("in", ", ".join(_zlit(lf[2]) for lf in leaves)))
                else:
                    rest.append(_zexpr(c, name))
            for field, pieces in cells.items():
                col = columns.setdefault(field, {"id": f"c_{field}", "name": field,
                                                 "field": field})
                if len(pieces) == 1:
                    op, x = pieces[0]
                    row[col["id"]] = x if op in ("==", "in") else f"{op} {x}"
                else:
                    row[col["id"]] = " and ".join(
                        f"$ in [{x}]" if op == "in" else f"$ {op} {x}" for op, x in pieces)
            if rest:
                row["c_expr"] = " and ".join(rest)
    inputs = [*columns.values(), {"id": "c_expr", "name": "condition"}]
    for row in rows:  # zen skips a row that lacks a cell for any input column
        for col in inputs:
            row.setdefault(col["id"], "")
    content = {
        "contentType": "application/vnd.gorules.decision",
        "nodes": [
            {"id": "in", "type": "inputNode", "name": "Request", "position": {"x": 0, "y": 0}},
            {"id": "dt", "type": "decisionTableNode", "name": "Rules",
             "position": {"x": 300, "y": 0},
             "content": {"hitPolicy": "collect", "inputs": inputs,
                         "outputs": [{"id": "out", "name": "rule", "field": "rule"}],
                         "rules": rows}},
            {"id": "out", "type": "outputNode", "name": "Response",
             "position": {"x": 600, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "sourceId": "in", "targetId": "dt", "type": "edge"},
            {"id": "e2", "sourceId": "dt", "targetId": "out", "type": "edge"},
        ],
    }
    return content


# ---------------------------------------------------------------------------------------
# (d) plain Python: interpret the durable JSON
# ---------------------------------------------------------------------------------------
_PY_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b,
    "$neq": lambda a, b: a != b,
}


def holds(cond: Any, fact: dict[str, Any]) -> bool:
    """durable semantics: a missing field makes every comparison on it false."""
    if cond is True:
        return True
    ((k, v),) = cond.items()
    if k == "$and":
        return all(holds(c, fact) for c in v)
    if k == "$or":
        return any(holds(c, fact) for c in v)
    cmp = _PY_CMP.get(k)
    if cmp is not None:
        ((f, x),) = v.items()
        return f in fact and cmp(fact[f], x)
    return k in fact and fact[k] == v


def py_match(compiled: CompiledPolicy, facts: tuple[dict, dict]) -> set[str]:
    out = set()
    for group, fact in zip(compiled.groups.values(), facts, strict=True):
        for rid, cond in group.rules.items():
            if holds(cond, fact):
                out.add(rid)
    return out


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------
class Timing:
    """Per-call latencies → rate (calls/s from the mean), p50 and p99 (µs); ``cpu`` is the
    process CPU time over the wall time of the loop (below ~0.9: other processes took the
    CPU and the figures are inflated)."""

    def __init__(self, lat: list[int], cpu: float):
        self.cpu = cpu
        s = sorted(lat)
        self.n = len(s)
        self.mean_ns = sum(s) / len(s)
        self.rate = 1e9 / self.mean_ns
        self.p50 = s[len(s) // 2] / 1000
        self.p99 = s[min(len(s) - 1, int(len(s) * 0.99))] / 1000


def timed(fn: Callable[[Any], Any], items: list[Any], warmup: int,
          keep: Callable[[Any], Any] = lambda r: r) -> tuple[Timing, list]:
    """Warm up on the first ``warmup`` items, then time ``fn`` on every item separately.
    Returns the timing and ``keep(result)`` per item (computed outside the timed call, so
    that big results, e.g. decisions with their trails, are not kept alive for the garbage
    collector to walk during the rest of the loop)."""
    for x in items[:warmup]:
        fn(x)
    gc.collect()
    pc = time.perf_counter_ns
    lat = [0] * len(items)
    out: list[Any] = [None] * len(items)
    cpu0, wall0 = time.process_time_ns(), pc()
    for i, x in enumerate(items):
        t0 = pc()
        r = fn(x)
        lat[i] = pc() - t0
        out[i] = keep(r)
        del r
    cpu = (time.process_time_ns() - cpu0) / max(1, pc() - wall0)
    return Timing(lat, cpu), out


def _best_of(fn: Callable[[], Any], budget_s: float = 2.0, max_runs: int = 3) -> tuple[float, Any]:
    """Min wall time (ms) over up to ``max_runs`` runs within ``budget_s``; last result."""
    best, result, spent = float("inf"), None, 0.0
    for _ in range(max_runs):
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best * 1000, result


def bench_policy(label: str, text: str, requests: list[dict], log: Callable[[str], None]
                 ) -> dict[str, Any]:
    load_ms, compiled = _best_of(lambda: compile_policy(load_policy_text(text, label)))
    eng = adapter.get_engine()  # the process-wide Host exists before timing registration
    t0 = time.perf_counter()
    for name, group in compiled.groups.items():  # what _runtime does on first use
        if group.rules:
            eng.register(f"{compiled.name}_{name}", group.rules)
    reg_ms = (time.perf_counter() - t0) * 1000
    runtime = _runtime(compiled)  # same keys and rules: reuses the handles registered above
    handles = runtime["handles"]
    n = len(requests)
    warm = min(200, max(10, n // 5))
    log(f"{label}: {compiled.policy.rule_count} rules, "
        f"chunks {[h.chunk_count for h in handles.values()]}, {n} requests")

    facts = [build_facts(compiled, r) for r in requests]

    full, decisions = timed(lambda r: evaluate(compiled, r), requests, warm, lambda d: (
        d.outcome, frozenset(e.rule_id for e in d.trail.rules if e.matched)))
    log(f"  full  {full.rate:9.0f}/s")

    h1, h2 = handles.get("s1"), handles.get("s2")
    empty: frozenset[str] = frozenset()

    def raw(f: tuple[dict, dict]) -> tuple[frozenset[str], frozenset[str]]:
        return (eng.match(h1, f[0]) if h1 else empty, eng.match(h2, f[1]) if h2 else empty)

    rawt, raw_out = timed(raw, facts, warm)
    log(f"  raw   {rawt.rate:9.0f}/s")
    want: list[frozenset[str]] = [a | b for a, b in raw_out]

    # the pre-built facts are evaluate's facts: same matched rules as the decision trail
    for (_, got), w in zip(decisions, want, strict=True):
        assert got == w, f"{label}: trail {sorted(got ^ w)[:5]} differs from the raw match"

    t0 = time.perf_counter()
    content, by_column = zen_table(compiled), zen_table(compiled, "columns")
    zen_engine = zen.ZenEngine({"loader": {"type": "static", "content": {
        "rules": content, "columns": by_column}}})
    zen_engine.evaluate("rules", {})  # the static loader parses a graph on first use
    zen_build_ms = (time.perf_counter() - t0) * 1000
    zin = [zen_input(compiled, f) for f in facts]

    def zen_keep(res: dict) -> tuple[float, frozenset[str]]:
        return _duration_us(res["performance"]), frozenset(o["rule"] for o in res["result"])

    zent, zen_out = timed(lambda z: zen_engine.evaluate("rules", z), zin, warm, zen_keep)
    log(f"  zen   {zent.rate:9.0f}/s (tables built in {zen_build_ms:.0f} ms)")
    zen_agree = sum(got == w for (_, got), w in zip(zen_out, want, strict=True)) / n
    zen_self = sorted(t for t, _ in zen_out)[n // 2]
    # for comparison, on the first requests only: the per-field-column layout of the same
    # table, and the other Python entry point (ZenDecision.evaluate) on the main layout
    k = min(n, 100)
    zcol, zcol_out = timed(lambda z: zen_engine.evaluate("columns", z), zin[:k],
                           min(10, k // 5), zen_keep)
    zcol_agree = sum(got == w for (_, got), w in zip(zcol_out, want, strict=False)) / k
    decision = zen.ZenEngine().create_decision(json.dumps(content))
    zdec, _ = timed(lambda z: decision.evaluate(z), zin[:k], min(10, k // 5))
    log(f"  zen   per-field columns p50 {zcol.p50:.0f} µs; ZenDecision p50 {zdec.p50:.0f} µs")

    pyt, py_out = timed(lambda f: py_match(compiled, f), facts, warm)
    log(f"  py    {pyt.rate:9.0f}/s")
    py_agree = sum(p == w for p, w in zip(py_out, want, strict=True)) / n

    outcomes: dict[str, int] = {}
    for outcome, _ in decisions:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {
        "label": label, "rules": compiled.policy.rule_count, "n": n,
        "chunks": sum(h.chunk_count for h in handles.values()),
        "hits": sum(map(len, want)) / n, "load_ms": load_ms, "reg_ms": reg_ms,
        "full": full, "raw": rawt, "zen": zent, "py": pyt,
        "zen_agree": zen_agree, "py_agree": py_agree, "outcomes": outcomes,
        "zen_build_ms": zen_build_ms, "zen_self": zen_self, "zen_decision": zdec,
        "zen_columns": zcol, "zen_columns_agree": zcol_agree,
        "zen_column_count": len(by_column["nodes"][1]["content"]["inputs"]),
    }


def _duration_us(text: str) -> float:
    """zen's ``performance`` string (``"39.1µs"``, ``"2.6ms"``, ``"812ns"``) in µs."""
    for unit, scale in (("ns", 1e-3), ("µs", 1.0), ("us", 1.0), ("ms", 1e3), ("s", 1e6)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(f"unknown duration {text!r}")


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------
def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"

    def ver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return [
        f"CPU      {cpu}; {os.cpu_count()} cores ({usable} usable)",
        f"Python   {platform.python_implementation()} {platform.python_version()} "
        f"({platform.platform()})",
        f"Engines  durable_rules {ver('durable-rules')}; zen-engine {ver('zen-engine')}",
    ]


def table(rows: list[dict[str, Any]]) -> str:
    head1 = ["", "", "", "", "load+", "first", "(a) full decision", "", "",
             "(b) raw durable match", "", "", "(c) zen decision table", "", "", "",
             "(d) plain Python", "", "", "full/", "full/"]
    head2 = ["policy", "rules", "hits", "reqs", "compile", "reg ms", "dec/s", "p50 µs",
             "p99 µs", "req/s", "p50 µs", "p99 µs", "req/s", "p50 µs", "p99 µs", "agree",
             "req/s", "p50 µs", "p99 µs", "zen", "raw"]
    body = []
    for r in rows:
        cells = [r["label"], str(r["rules"]), f"{r['hits']:.1f}", str(r["n"]),
                 f"{r['load_ms']:.0f} ms", f"{r['reg_ms']:.0f}"]
        for k in ("full", "raw", "zen", "py"):
            t = r[k]
            cells += [f"{t.rate:,.0f}", f"{t.p50:,.0f}", f"{t.p99:,.0f}"]
            if k == "zen":
                cells.append(f"{r['zen_agree']:.1%}")
        cells += [f"{r['full'].mean_ns / r['zen'].mean_ns:.1f}×",
                  f"{r['full'].mean_ns / r['raw'].mean_ns:.1f}×"]
        body.append(cells)
    widths = [max(len(x[i]) for x in [head2, *body]) for i in range(len(head2))]
    # group headers span their columns
    spans = [(6, 3), (9, 3), (12, 4), (16, 3)]
    line1 = [" " * w for w in widths]
    for start, count in spans:
        w = sum(widths[start:start + count]) + 2 * (count - 1)
        line1[start] = head1[start][:w].center(w)
        for j in range(start + 1, start + count):
            line1[j] = None  # type: ignore[call-overload]
    line1[4], line1[5] = head1[4].rjust(widths[4]), head1[5].rjust(widths[5])
    line1[19], line1[20] = head1[19].rjust(widths[19]), head1[20].rjust(widths[20])

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    out = ["  ".join(c for c in line1 if c is not None), fmt(head2),
           "  ".join("-" * w for w in widths)]
    out += [fmt(c) for c in body]
    return "\n".join(out)


def shipped_requests(n: int) -> list[dict]:
    from positions import replay_requests  # examples/receivables/positions.py

    return [r for r, _ in itertools.islice(replay_requests(AR_CSV), n)]


def profile(requests: list[dict], top: int) -> str:
    compiled = compile_policy(load_policy_text(SHIPPED.read_text(), str(SHIPPED)))
    for r in requests[:100]:
        evaluate(compiled, r)
    prof = cProfile.Profile()
    prof.enable()
    for r in requests:
        evaluate(compiled, r)
    prof.disable()
    buf = io.StringIO()
    for key in ("tottime", "cumulative"):
        stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key)
        buf.write(f"\n--- cProfile of evaluate() on policies.yaml, {len(requests)} requests, "
                  f"sorted by {key} ---\n")
        stats.print_stats(top)
    return buf.getvalue()


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few requests: a smoke run")
    ap.add_argument("--profile", action="store_true",
                    help="also print a cProfile of evaluate() on policies.yaml")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(list(argv) if argv is not None else None)

    # (label, rules, requests): counts keep a full run within a few minutes on 2 cores
    plan = [("policies.yaml", 0, 2000), ("generated-100", 100, 5000),
            ("generated-1000", 1000, 2000), ("generated-5000", 5000, 500)]
    if args.quick:
        plan = [(label, k, max(20, n // 20)) for label, k, n in plan]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    load0 = os.getloadavg()
    started = time.perf_counter()
    rows = []
    replay = shipped_requests(plan[0][2])
    for label, k, n in plan:
        if k == 0:
            rows.append(bench_policy(label, SHIPPED.read_text(), replay, log))
            continue
        text = generate_policy(k, args.seed)
        rng = random.Random(args.seed + k)
        reqs = [generate_request(rng, i) for i in range(n)]
        rows.append(bench_policy(label, text, reqs, log))

    print("\n".join(machine()))
    print(f"Run      {time.strftime('%Y-%m-%d %H:%M:%S')}; seed {args.seed}; "
          f"{'quick' if args.quick else 'full'} run; "
          f"{time.perf_counter() - started:.0f} s")
    print()
    print(table(rows))
    print()
    for r in rows:
        oc = ", ".join(f"{k} {v / r['n']:.0%}" for k, v in sorted(r["outcomes"].items()))
        cpu = " ".join(f"{k} {r[k].cpu:.2f}" for k in ("full", "raw", "zen", "py"))
        print(f"{r['label']}: outcomes {oc}; {r['chunks']} durable rulesets; plain-Python "
              f"agreement {r['py_agree']:.1%}; CPU share {cpu}")
        zc, zd = r["zen_columns"], r["zen_decision"]
        print(f"  zen: tables built+loaded in {r['zen_build_ms']:,.0f} ms; zen's own "
              f"'performance' p50 {r['zen_self']:,.0f} µs; first {zc.n} requests: per-field "
              f"layout ({r['zen_column_count']} columns) p50 {zc.p50:,.0f} µs, agree "
              f"{r['zen_columns_agree']:.0%}; ZenDecision.evaluate p50 {zd.p50:,.0f} µs")
    load1 = os.getloadavg()
    print(f"Load average before {load0[0]:.2f}, after {load1[0]:.2f} (1 min; {os.cpu_count()} "
          "cores). A CPU share well below 1 means other processes competed for the CPU.")
    if args.profile:
        print(profile(replay, 30))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
