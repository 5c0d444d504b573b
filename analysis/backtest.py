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
(``time.perf_counter``; reading the rows and starting worker processes included).

The rows are decided in chunks by an ``analysis.executor.Executor``: in this process
(``LocalExecutor``, the default) or on several cores (``ProcessExecutor``). A worker
process gets the policy as text with its sha256 (``PolicySource``) and compiles and
registers it once (``compiled_policy``); each chunk comes back as one compact outcome per
row, and the parent tallies them in input order, so every figure but the timing is the
same whatever the executor and the number of workers.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from analysis.executor import Executor, LocalExecutor
from engine.evaluate import EvaluationError, InputErrors, evaluate
from rules.compile import CompiledPolicy, compile_policy
from rules.validate import load_policy_text

__all__ = [
    "COST_BAD_APPROVED",
    "COST_GOOD_REJECTED",
    "CHUNK_ROWS",
    "BacktestResult",
    "PolicySource",
    "RowError",
    "RowOutcome",
    "Strategy",
    "compiled_policy",
    "decide_chunk",
    "render",
    "run_backtest",
]

COST_BAD_APPROVED = 5
COST_GOOD_REJECTED = 1
OUTCOMES = ("approve", "refer", "decline", "error")
LABELS = ("good", "bad")
MAX_LISTED_ERRORS = 10
# Rows per chunk handed to the executor. Each chunk is a few hand-offs between the
# pool's threads and the parent, which wait for the interpreter lock while the parent
# parses rows: 250-row chunks starved two workers (README "Performance").
CHUNK_ROWS = 1000
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


@dataclass(frozen=True)
class PolicySource:
    """A policy as a worker process receives it: the YAML ``text``, the ``sha256`` of its
    UTF-8 bytes (``Policy.sha256``) and the ``file`` name used in messages."""

    text: str
    sha256: str
    file: str

    @classmethod
    def of(cls, compiled: CompiledPolicy) -> PolicySource:
        p = compiled.policy
        return cls(p.source, p.sha256, p.file)


_COMPILED: dict[str, CompiledPolicy] = {}  # this process's compiled policies, by sha256


def compiled_policy(source: PolicySource) -> CompiledPolicy:
    """The policy of ``source``, loaded, validated and compiled once per process (its
    engine rulesets are registered on first use, in this process). The text is checked
    against ``source.sha256`` on every call: ``ValueError`` if it does not hash to it;
    ``PolicyErrors`` if it is not a valid policy (neither happens for a source made with
    ``PolicySource.of``)."""
    digest = hashlib.sha256(source.text.encode("utf-8")).hexdigest()
    if digest != source.sha256:
        raise ValueError(
            f"{source.file}: the policy text has sha256 {digest}, expected {source.sha256}"
        )
    compiled = _COMPILED.get(digest)
    if compiled is None:
        compiled = _COMPILED[digest] = compile_policy(load_policy_text(source.text, source.file))
    return compiled


class RowOutcome(NamedTuple):
    """One decided row, as a chunk returns it: ``outcome`` (approve/refer/decline, or
    ``error``), ``tier`` (None on error), the distinct blocking reason ``codes`` of a row
    that was not approved (in reason order), and for an error its ``kind``
    (input/evaluation/unexpected), ``message`` and the request's ``order_id``."""

    outcome: str
    tier: str | None = None
    codes: tuple[str, ...] = ()
    kind: str | None = None
    message: str | None = None
    order_id: str | None = None


def decide_row(compiled: CompiledPolicy, request: Any) -> RowOutcome:
    """Decide one request; every failure becomes an ``error`` outcome (never raised)."""
    try:
        decision = evaluate(compiled, request)
    except InputErrors as exc:
        return RowOutcome("error", kind="input", message=str(exc), order_id=_order_id(request))
    except EvaluationError as exc:
        return RowOutcome("error", kind="evaluation", message=str(exc), order_id=_order_id(request))
    except Exception as exc:  # never crash the run; listed for the person running it
        return RowOutcome(
            "error",
            kind="unexpected",
            message=f"{type(exc).__name__}: {exc}",
            order_id=_order_id(request),
        )
    outcome = decision.outcome
    codes: tuple[str, ...] = ()
    if outcome != "approve":
        codes = tuple(
            dict.fromkeys(
                r.code
                for r in decision.reasons
                if r.stage in _BLOCKING_STAGES or r.rule_id == _OVER_CAP_RULE
            )
        )
    return RowOutcome(outcome, decision.tier, codes)


def decide_chunk(policy: CompiledPolicy | PolicySource, requests: list[Any]) -> list[RowOutcome]:
    """Decide ``requests`` in order under ``policy`` (compiled here, once per process, when
    given as a ``PolicySource``): one ``RowOutcome`` per request. Module-level, so that
    ``functools.partial(decide_chunk, source)`` can be sent to worker processes."""
    compiled = policy if isinstance(policy, CompiledPolicy) else compiled_policy(policy)
    return [decide_row(compiled, request) for request in requests]


def _chunks(
    rows: Iterable[tuple[dict, str]], size: int, labels: deque[list[str]]
) -> Iterator[list[Any]]:
    """The requests of ``rows`` in lists of ``size``; each chunk's labels are appended to
    ``labels`` as it is made. Raises ``ValueError`` for a label other than good/bad."""
    it = iter(rows)
    first = 1
    while True:
        batch = list(itertools.islice(it, size))
        if not batch:
            return
        for i, (_, label) in enumerate(batch, start=first):
            if label not in LABELS:
                raise ValueError(f"row {i}: label must be 'good' or 'bad', got {label!r}")
        labels.append([label for _, label in batch])
        first += len(batch)
        yield [request for request, _ in batch]


def run_backtest(
    compiled: CompiledPolicy,
    rows: Iterable[tuple[dict, str]],
    progress: bool = True,
    executor: Executor | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> BacktestResult:
    """Decide every ``(request, label)`` of ``rows`` under ``compiled`` and tally the results.

    ``label`` must be ``"good"`` or ``"bad"`` (else ``ValueError``). A row whose request does
    not fit the policy (``InputErrors``) or whose evaluation fails (``EvaluationError`` or
    any other exception) is counted as ``error`` (not granted) and the first 10 are listed;
    the run goes on. Errors raised by ``rows`` itself (e.g. ``analysis.datasets.DatasetError``
    for a malformed line) propagate. ``progress`` shows a progress bar on stderr (Rich;
    removed when done; silent when stderr is not a terminal).

    ``executor`` decides the rows in chunks of ``chunk_rows`` (default: this process,
    ``LocalExecutor``); every figure but ``seconds`` is the same for any executor. It raises
    what the executor raises (``analysis.executor.ExecutorError`` when a worker process
    dies). Returns a ``BacktestResult``; see the module docstring for the metrics and the
    cost convention."""
    policy = compiled.policy
    executor = executor if executor is not None else LocalExecutor()
    decide = functools.partial(
        decide_chunk, compiled if executor.in_process else PolicySource.of(compiled)
    )
    result = BacktestResult(policy=f"{policy.id} {policy.version}", currency=policy.currency)
    counts: Counter = Counter()
    labels: Counter = Counter()
    chunk_labels: deque[list[str]] = deque()
    total = len(rows) if hasattr(rows, "__len__") else None  # type: ignore[arg-type]
    row = 0
    start = time.perf_counter()
    with _progress(progress, total) as bar:
        task = bar.add_task("back-test", total=total)
        for outcomes in executor.map_chunks(decide, _chunks(rows, chunk_rows, chunk_labels)):
            for o, label in zip(outcomes, chunk_labels.popleft(), strict=True):
                row += 1
                labels[label] += 1
                _tally(result, row, o, label)
                counts[(o.outcome, label)] += 1
            bar.advance(task, len(outcomes))
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


def _tally(result: BacktestResult, row: int, o: RowOutcome, label: str) -> None:
    """Add decided row number ``row`` (1-based) to the tiers, reasons and errors."""
    if o.outcome == "error":
        result.error_count += 1
        if len(result.errors) < MAX_LISTED_ERRORS:
            result.errors.append(RowError(row, o.order_id, o.kind or "unexpected", o.message or ""))
        return
    result.tiers.setdefault(o.tier, Counter())[label] += 1
    if o.outcome == "approve":
        result.tier_approved[o.tier] += 1
    for code in o.codes:
        result.reasons.setdefault(code, Counter())[label] += 1


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
