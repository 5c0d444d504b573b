"""Back-test a policy on labelled applications: ``run_backtest`` and ``render``.

Every ``(request, label)`` row (see ``analysis.datasets``) is decided with
``engine.evaluate.evaluate`` and the outcome is compared with the realised class
(``"good"`` repaid, ``"bad"`` defaulted).

Cost convention (German Credit cost matrix, ``german.doc``; Hofmann 1994): approving a bad
application costs 5, not granting a good one costs 1, the two correct cases cost 0.

- ``approve`` counts as *predicted good* (granted);
- ``refer`` and ``decline`` count as *predicted bad*: not granted automatically. A row whose
  evaluation failed (``error``) counts the same way, as the engine fails closed;
- so ``cost = 5 x bad approved + 1 x good not approved``;
- ``cost_refers_granted`` is the other bound: every refer granted by the person reviewing
  it, ``5 x bad (approved or referred) + 1 x good (declined or error)``.

Baselines on the same rows: *approve all* (cost 5 x bads), *decline all* (cost = goods,
i.e. never lending) and the *oracle* that knows the class (approves exactly the goods,
cost 0). Rates are percent of all rows, one decimal; the bad rate among approved is percent
of the approved rows. Decisions per second is rows / wall-clock seconds of the whole run
(``time.perf_counter``; reading the rows included).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.evaluate import EvaluationError, InputErrors, evaluate
from rules.compile import CompiledPolicy

__all__ = [
    "COST_BAD_APPROVED",
    "COST_GOOD_REJECTED",
    "BacktestResult",
    "RowError",
    "Strategy",
    "render",
    "run_backtest",
]

COST_BAD_APPROVED = 5
COST_GOOD_REJECTED = 1
OUTCOMES = ("approve", "refer", "decline", "error")
LABELS = ("good", "bad")
MAX_LISTED_ERRORS = 10
# Reasons that stop an automatic approval: knock-outs, referrals and a term over the cap
# (term rules that merely cap the term are conditions, not blockers).
_BLOCKING_STAGES = ("knockout", "decline", "referral")
_OVER_CAP_RULE = "terms.over_cap"


@dataclass(frozen=True)
class RowError:
    """A row that could not be decided: 1-based ``row`` in the input, the request's
    ``order_id`` if any, ``kind`` (``input``, ``evaluation`` or ``unexpected``) and the
    ``message``."""

    row: int
    order_id: str | None
    kind: str
    message: str

    def __str__(self) -> str:
        who = f"row {self.row}" + (f" ({self.order_id})" if self.order_id else "")
        return f"{who}: {self.kind} error: {self.message}"


@dataclass(frozen=True)
class Strategy:
    """Counts of one decision strategy on the rows: ``counts[(outcome, label)]`` with
    outcome in approve/refer/decline/error and label good/bad."""

    name: str
    counts: dict[tuple[str, str], int]

    def n_of(self, outcome: str, label: str | None = None) -> int:
        """Rows with ``outcome`` (and ``label`` if given)."""
        labels = LABELS if label is None else (label,)
        return sum(self.counts.get((outcome, lb), 0) for lb in labels)

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def rate(self, outcome: str) -> float:
        """Percent of all rows with ``outcome`` (0.0 when there are no rows)."""
        return 100.0 * self.n_of(outcome) / self.n if self.n else 0.0

    @property
    def bad_rate_approved(self) -> float | None:
        """Percent of approved rows that went bad; None when nothing was approved."""
        approved = self.n_of("approve")
        return 100.0 * self.n_of("approve", "bad") / approved if approved else None

    @property
    def cost(self) -> int:
        """5 x bad approved + 1 x good refused, referred or errored (module docstring)."""
        good_not_granted = sum(self.n_of(o, "good") for o in ("refer", "decline", "error"))
        bad_granted = self.n_of("approve", "bad")
        return COST_BAD_APPROVED * bad_granted + COST_GOOD_REJECTED * good_not_granted

    @property
    def cost_refers_granted(self) -> int:
        """Cost if every refer were granted: 5 x bad approved or referred + 1 x good declined
        or errored."""
        bad_granted = self.n_of("approve", "bad") + self.n_of("refer", "bad")
        good_refused = self.n_of("decline", "good") + self.n_of("error", "good")
        return COST_BAD_APPROVED * bad_granted + COST_GOOD_REJECTED * good_refused


@dataclass
class BacktestResult:
    """Outcome of ``run_backtest``.

    - ``policy``: ``"<id> <version>"``; ``currency``.
    - ``n`` rows, ``goods``, ``bads``.
    - ``policy_strategy`` and the baselines ``approve_all``, ``decline_all``, ``oracle``
      (``Strategy`` counts; see the module docstring for the cost convention).
    - ``error_count`` and ``errors`` (the first ``MAX_LISTED_ERRORS`` ``RowError``).
    - ``seconds``: wall-clock duration; ``decisions_per_second`` = n / seconds.
    - ``tiers[tier][label]`` and ``tier_approved[tier]``: rows per tier (decided rows only).
    - ``reasons[code][label]``: rows per blocking reason code (knock-out, referral, term over
      the cap); a row may count under several codes.
    """

    policy: str
    currency: str
    n: int = 0
    goods: int = 0
    bads: int = 0
    policy_strategy: Strategy | None = None
    approve_all: Strategy | None = None
    decline_all: Strategy | None = None
    oracle: Strategy | None = None
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0
    tiers: dict[str, Counter] = field(default_factory=dict)
    tier_approved: Counter = field(default_factory=Counter)
    reasons: dict[str, Counter] = field(default_factory=dict)

    @property
    def decisions_per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    @property
    def strategies(self) -> list[Strategy]:
        """Policy first, then the baselines, as rendered."""
        return [
            s
            for s in (self.policy_strategy, self.approve_all, self.decline_all, self.oracle)
            if s is not None
        ]


def _order_id(request: Any) -> str | None:
    try:
        oid = request["order"]["id"]
    except (KeyError, TypeError):
        return None
    return oid if isinstance(oid, str) else None


def _progress(enabled: bool, total: int | None):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("back-test"),
        BarColumn(),
        MofNCompleteColumn() if total else TextColumn("{task.completed} rows"),
        TimeElapsedColumn(),
    ]
    if total:
        columns.append(TimeRemainingColumn())
    console = Console(stderr=True)
    # Nothing to animate when stderr is a file or a pipe (CI logs): stay silent there.
    return Progress(
        *columns, console=console, transient=True, disable=not enabled or not console.is_terminal
    )


def run_backtest(
    compiled: CompiledPolicy, rows: Iterable[tuple[dict, str]], progress: bool = True
) -> BacktestResult:
    """Decide every ``(request, label)`` of ``rows`` under ``compiled`` and tally the results.

    ``label`` must be ``"good"`` or ``"bad"`` (else ``ValueError``). A row whose request does
    not fit the policy (``InputErrors``) or whose evaluation fails (``EvaluationError`` or
    any other exception) is counted as ``error`` (not granted) and the first 10 are listed;
    the run goes on. Errors raised by ``rows`` itself (e.g. ``analysis.datasets.DatasetError``
    for a malformed line) propagate. ``progress`` shows a progress bar on stderr (Rich;
    removed when done; silent when stderr is not a terminal). Returns a
    ``BacktestResult``; see the module docstring for the metrics and the cost convention."""
    policy = compiled.policy
    result = BacktestResult(policy=f"{policy.id} {policy.version}", currency=policy.currency)
    counts: Counter = Counter()
    labels: Counter = Counter()
    total = len(rows) if hasattr(rows, "__len__") else None  # type: ignore[arg-type]
    start = time.perf_counter()
    with _progress(progress, total) as bar:
        task = bar.add_task("back-test", total=total)
        for i, (request, label) in enumerate(rows, start=1):
            if label not in LABELS:
                raise ValueError(f"row {i}: label must be 'good' or 'bad', got {label!r}")
            labels[label] += 1
            try:
                decision = evaluate(compiled, request)
            except InputErrors as exc:
                outcome = "error"
                err = RowError(i, _order_id(request), "input", str(exc))
            except EvaluationError as exc:
                outcome = "error"
                err = RowError(i, _order_id(request), "evaluation", str(exc))
            except Exception as exc:  # never crash the run; listed for the person running it
                outcome = "error"
                err = RowError(i, _order_id(request), "unexpected", f"{type(exc).__name__}: {exc}")
            else:
                outcome = decision.outcome
                result.tiers.setdefault(decision.tier, Counter())[label] += 1
                if outcome == "approve":
                    result.tier_approved[decision.tier] += 1
                blocking = [
                    r.code
                    for r in decision.reasons
                    if outcome != "approve"
                    and (r.stage in _BLOCKING_STAGES or r.rule_id == _OVER_CAP_RULE)
                ]
                for code in dict.fromkeys(blocking):
                    result.reasons.setdefault(code, Counter())[label] += 1
            if outcome == "error":
                result.error_count += 1
                if len(result.errors) < MAX_LISTED_ERRORS:
                    result.errors.append(err)
            counts[(outcome, label)] += 1
            bar.advance(task)
    result.seconds = time.perf_counter() - start
    result.goods, result.bads = labels["good"], labels["bad"]
    result.n = result.goods + result.bads
    result.policy_strategy = Strategy("policy", dict(counts))
    result.approve_all = Strategy(
        "approve all", {("approve", "good"): result.goods, ("approve", "bad"): result.bads}
    )
    result.decline_all = Strategy(
        "decline all", {("decline", "good"): result.goods, ("decline", "bad"): result.bads}
    )
    result.oracle = Strategy(
        "oracle (actual class)",
        {("approve", "good"): result.goods, ("decline", "bad"): result.bads},
    )
    return result


def _pct(part: int | float, whole: int | float) -> str:
    return f"{100.0 * part / whole:.1f}" if whole else "-"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


def render(result: BacktestResult) -> str:
    """The back-test as plain text: summary line, outcome x actual class, the strategy
    comparison (policy and baselines in one table), bad rate per tier, blocking reasons
    and the first errors. Columns are explained under the tables."""
    r = result
    out = [
        f"Back-test of policy {r.policy} ({r.currency}) on {r.n} rows: "
        f"{r.goods} good, {r.bads} bad",
        f"{r.n} decisions in {r.seconds:.2f} s = {r.decisions_per_second:,.0f} decisions/s "
        f"(wall clock); {r.error_count} rows could not be decided",
        "",
    ]
    p = r.policy_strategy
    if p is None or r.n == 0:
        return "\n".join(out + ["no rows"])

    out.append("Policy outcome x actual class (rows)")
    conf = []
    for o in OUTCOMES:
        if o == "error" and not r.error_count:
            continue
        n = p.n_of(o)
        conf.append(
            [
                o,
                str(p.n_of(o, "good")),
                str(p.n_of(o, "bad")),
                str(n),
                _pct(n, r.n),
                _pct(p.n_of(o, "bad"), n),
            ]
        )
    conf.append(["total", str(r.goods), str(r.bads), str(r.n), "100.0", _pct(r.bads, r.n)])
    out += _table(["outcome", "good", "bad", "total", "% rows", "bad %"], conf)
    out.append("")

    out.append("Policy against baselines (same rows)")
    rows = []
    shown = [o for o in OUTCOMES if o != "error" or r.error_count]
    for s in r.strategies:
        bad = s.bad_rate_approved
        rows.append(
            [
                s.name,
                *(f"{s.rate(o):.1f}" for o in shown),
                "-" if bad is None else f"{bad:.1f}",
                str(s.cost),
                f"{s.cost / s.n:.3f}",
                str(s.cost_refers_granted),
            ]
        )
    out += _table(
        [
            "strategy",
            *(f"{o} %" for o in shown),
            "bad % of approved",
            "cost",
            "cost/row",
            "cost if refers granted",
        ],
        rows,
    )
    refused = "refer, decline and error" if r.error_count else "refer and decline"
    out += [
        f"cost = {COST_BAD_APPROVED} x bad approved + {COST_GOOD_REJECTED} x good not approved "
        "(german.doc cost matrix).",
        f"approve = predicted good; {refused} = predicted bad (not granted automatically).",
        "cost if refers granted: every refer counted as approved. Rates in % of all rows.",
        "",
    ]

    if r.tiers:
        out.append("Policy tiers (decided rows)")
        trows = []
        for tier in sorted(r.tiers):
            c = r.tiers[tier]
            n = c["good"] + c["bad"]
            trows.append(
                [
                    tier,
                    str(n),
                    str(c["good"]),
                    str(c["bad"]),
                    _pct(c["bad"], n),
                    str(r.tier_approved[tier]),
                ]
            )
        out += _table(["tier", "rows", "good", "bad", "bad %", "approved"], trows)
        out.append("")

    if r.reasons:
        out.append("Why not approved (a row may have several reasons)")
        rrows = []
        for code, c in sorted(r.reasons.items(), key=lambda kv: -(kv[1]["good"] + kv[1]["bad"])):
            n = c["good"] + c["bad"]
            rrows.append([code, str(n), str(c["good"]), str(c["bad"]), _pct(c["bad"], n)])
        out += _table(["reason", "rows", "good", "bad", "bad %"], rrows)
        out.append("")

    if r.errors:
        out.append(f"Errors (first {len(r.errors)} of {r.error_count})")
        out += [f"  {e}" for e in r.errors]
        out.append("")
    return "\n".join(out).rstrip()
