"""Derive the scorecard points of ``policy.yaml`` from the German Credit data (WoE).

Run from the repository root::

    .venv/bin/python examples/german-credit/derive_points.py [PATH/TO/german.data]

(default: ``../shared/data/german-credit/german.data`` beside the repository).

For every factor and coarse class (bin) of the policy's scorecard it prints the goods,
bads, bad rate, weight of evidence, information value and points, then each factor's
points as a YAML ``bins`` block ready to paste into the policy.

Formulas (Siddiqi, *Credit Risk Scorecards*, Wiley 2006):

- WoE of a bin = ln( (goods in bin / all goods) / (bads in bin / all bads) ); positive
  means better than average. 0.5 is added to each count first so a bin without goods or
  bads keeps a finite WoE (no bin here is empty; on this data the shift moves five bins
  by one point and no bin by more).
- Information value of a factor = sum over its bins of (good share - bad share) x WoE
  (rule of thumb: < 0.02 unpredictive, 0.02-0.1 weak, 0.1-0.3 medium, > 0.3 strong).
- points = round(factor x WoE), factor = PDO / ln 2 with PDO = 20 (every 20 points
  doubles the good:bad odds), so factor = 28.85.
- base points = round(500 + factor x ln(all goods / all bads)): 500 points means even
  odds; a score is then base + the points of each factor's bin (the log-odds summed as if
  the factors were independent, i.e. every regression weight set to 1).

The counts are over all 1000 rows, the same rows the back-test uses: the scorecard is
fitted in-sample, so back-test results on this file are optimistic; expect worse on new
applications.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analysis.datasets import read_dataset  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "german-credit" / "german.data"
PDO = 20
FACTOR = PDO / math.log(2)
EVEN_ODDS_SCORE = 500
SMOOTHING = 0.5


@dataclass(frozen=True)
class Bin:
    """A coarse class: its YAML form (``in`` list, or ``from``/``below`` in the field's unit)."""

    label: str
    test: Callable[[object], bool]
    yaml: str


def values(*names: str) -> Bin:
    """Enum bin holding ``names``."""
    return Bin(", ".join(names), lambda v: v in names, f"in: [{', '.join(names)}]")


def band(lo: int | None, hi: int | None, unit: int = 1, label: str = "") -> Bin:
    """Numeric bin [lo, hi) in units of the field (``unit`` scales months to days)."""
    parts = []
    if lo is not None:
        parts.append(f"from: {lo * unit}")
    if hi is not None:
        parts.append(f"below: {hi * unit}")
    lo_s = "" if lo is None else f"{lo} <= "
    hi_s = "" if hi is None else f" < {hi}"
    return Bin(label or f"{lo_s}x{hi_s}",
               lambda v: (lo is None or v >= lo * unit) and (hi is None or v < hi * unit),
               ", ".join(parts))


# The policy's factors in policy order (strongest information value first):
# (factor id, request field, coarse classes).
# Coarse classes follow Siddiqi's rules of thumb: at least ~5 % of the rows per bin where
# possible, similar bad rates merged, and a logical order for ordered attributes. The
# "vacation" purpose has no rows; it sits with the other consumer purposes.
FACTORS: list[tuple[str, str, list[Bin]]] = [
    ("SC_CHECKING", "customer.checking_account", [
        values("below_0"), values("0_to_200"), values("200_or_more"), values("none")]),
    ("SC_CREDIT_HISTORY", "customer.credit_history", [
        values("no_credits_all_paid", "all_paid_this_bank"), values("existing_paid_duly"),
        values("past_delays"), values("critical_other_credits")]),
    ("SC_DURATION", "order.payment_term_days", [
        band(None, 12, 30, "under 12 months"), band(12, 18, 30, "12-17 months"),
        band(18, 36, 30, "18-35 months"), band(36, None, 30, "36 months or more")]),
    ("SC_SAVINGS", "customer.savings", [
        values("below_100"), values("100_to_500"), values("500_to_1000", "1000_or_more"),
        values("unknown_or_none")]),
    ("SC_PURPOSE", "customer.purpose", [
        values("car_new", "education"),
        values("furniture_equipment", "domestic_appliances", "repairs", "vacation",
               "retraining", "business", "other"),
        values("radio_tv"), values("car_used")]),
    ("SC_PROPERTY", "customer.property", [
        values("unknown_or_none"), values("savings_insurance", "car_other"),
        values("real_estate")]),
    ("SC_AGE", "customer.age", [
        band(None, 26, label="under 26"), band(26, 35, label="26-34"),
        band(35, None, label="35 or older")]),
    ("SC_EMPLOYMENT", "customer.employment_years", [
        values("unemployed", "below_1"), values("1_to_4"), values("4_to_7", "7_or_more")]),
    ("SC_HOUSING", "customer.housing", [values("rent", "free"), values("own")]),
    ("SC_OTHER_INSTALMENTS", "customer.other_installment_plans", [
        values("bank", "stores"), values("none")]),
]


def field_value(request: dict, path: str) -> object:
    group, name = path.split(".")
    v = request[group][name]
    return int(v) if path == "order.amount" else v


@dataclass(frozen=True)
class BinStats:
    """One row of the WoE table: the bin, its goods and bads, WoE and points."""

    bin: Bin
    goods: int
    bads: int
    woe: float
    points: int


FactorStats = tuple[str, str, float, list[BinStats]]  # factor id, field, IV, bins


def woe_table(rows: list[tuple[dict, str]]) -> tuple[int, list[FactorStats]]:
    """``(base_points, [(factor id, field, information value, [BinStats per bin])])`` for
    ``rows`` of ``(request, label)``; formulas in the module docstring."""
    goods = sum(1 for _, label in rows if label == "good")
    bads = len(rows) - goods
    base = round(EVEN_ODDS_SCORE + FACTOR * math.log(goods / bads))
    table = []
    for fid, fieldname, bins in FACTORS:
        stats = []
        iv = 0.0
        for b in bins:
            hits = [label for req, label in rows if b.test(field_value(req, fieldname))]
            g = hits.count("good")
            d = len(hits) - g
            woe = math.log(((g + SMOOTHING) / goods) / ((d + SMOOTHING) / bads))
            iv += (g / goods - d / bads) * woe
            stats.append(BinStats(b, g, d, woe, round(FACTOR * woe)))
        if sum(s.goods + s.bads for s in stats) != len(rows):
            raise ValueError(f"{fid}: the bins do not split the rows exactly once")
        table.append((fid, fieldname, iv, stats))
    return base, table


def main(path: str | Path = DEFAULT_DATA) -> None:
    rows = list(read_dataset(path, "german"))
    goods = sum(1 for _, label in rows if label == "good")
    bads = len(rows) - goods
    base, table = woe_table(rows)
    print(f"{len(rows)} rows: {goods} good, {bads} bad (in-sample: the back-test uses the "
          "same rows)")
    print(f"factor = {PDO}/ln 2 = {FACTOR:.4f}; base points = round({EVEN_ODDS_SCORE} + "
          f"factor x ln({goods}/{bads})) = {base}\n")
    blocks = []
    lo = hi = base
    for fid, fieldname, iv, stats in table:
        print(f"{fid}  {fieldname}  IV = {iv:.3f}")
        print(f"    {'bin':40s} {'good':>5s} {'bad':>5s} {'bad %':>7s} {'WoE':>7s} {'pts':>5s}")
        for s in stats:
            rate = s.bads / (s.goods + s.bads) if s.goods + s.bads else float("nan")
            print(f"    {s.bin.label:40.40s} {s.goods:5d} {s.bads:5d} {rate:7.1%} "
                  f"{s.woe:+7.3f} {s.points:+5d}")
        print()
        points = [s.points for s in stats]
        lo += min(points)
        hi += max(points)
        blocks.append("\n".join([f"  {fid} ({fieldname}):"]
                                + [f"    - {{{s.bin.yaml}, points: {s.points}}}" for s in stats]))
    print(f"score range: {lo} .. {hi}\n")
    print("bins for policy.yaml:")
    print("\n".join(blocks))


if __name__ == "__main__":
    main(*sys.argv[1:2])
