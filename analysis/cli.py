"""The offline commands of the ``creditgate`` command line (registered on the root app by
``api.cli``): they work on policy files and data, without a database or a server::

    creditgate validate [POLICY]                       check a policy file
    creditgate decide REQUEST.json [--policy P] [--format json|text]
    creditgate test [POLICY] [--require-full-coverage]  run POLICY.tests.yaml
    creditgate backtest POLICY DATA [--format german|jsonl] [--limit N] [--no-progress]

Exit codes: 0 success; 1 policy errors (or a failing policy test, or a broken tests file);
2 the request or data does not fit (input errors, unreadable or invalid JSON); 3 no decision
was made (evaluation error, rule engine unavailable).

Output is plain text (no rich formatting). Errors go to stderr and say what is wrong, where
(``file:line:col`` or the request path) and why. The engine is imported only by the
commands that evaluate, so ``validate`` works without it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer

from rules.errors import PolicyErrors

EXIT_POLICY = 1
EXIT_INPUT = 2
EXIT_NO_DECISION = 3


class OutputFormat(StrEnum):
    json = "json"
    text = "text"


class DatasetFormat(StrEnum):
    german = "german"
    jsonl = "jsonl"


def err(line: str = "") -> None:
    typer.echo(line, err=True)


def fail(code: int, *lines: str) -> NoReturn:
    for line in lines:
        err(line)
    raise typer.Exit(code)


def policy_errors(exc: PolicyErrors) -> NoReturn:
    n = len(exc.errors)
    fail(
        EXIT_POLICY,
        *(str(e) for e in exc.errors),
        f"{n} error{'s' if n != 1 else ''} in the policy; nothing was evaluated",
    )


def load_compiled(policy: str) -> Any:
    """Load, validate and compile ``policy`` (exit 1 with every error on failure)."""
    from rules.compile import compile_policy
    from rules.validate import load_policy

    try:
        return compile_policy(load_policy(policy))
    except PolicyErrors as exc:
        policy_errors(exc)


def engine_module() -> Any:
    """``engine.evaluate`` (exit 3 if the rule engine cannot be imported)."""
    try:
        from engine import evaluate as module
    except ImportError as exc:
        fail(EXIT_NO_DECISION, f"no decision was made: the rule engine is not available ({exc})")
    return module


def summary(policy: Any) -> str:
    """One line describing a validated ``Policy``: id, version, sha256 prefix, rule counts by
    stage and the score range."""
    stages: dict[str, int] = {}
    for r in policy.rules:
        stages[r.stage] = stages.get(r.stage, 0) + 1
    names = {
        "knockout": ("knock-out", "knock-outs"),
        "scorecard": ("scorecard bin", "scorecard bins"),
        "decline": ("decline", "decline"),
        "deposit": ("deposit", "deposit"),
        "term": ("term", "term"),
        "referral": ("referral", "referral"),
    }
    parts = ", ".join(f"{stages[s]} {names[s][stages[s] != 1]}" for s in names if s in stages)
    return (
        f"ok: {policy.id} {policy.version} sha256:{policy.sha256[:12]} "
        f"{policy.rule_count} rules ({parts}), score {policy.min_score}..{policy.max_score}, "
        f"{len(policy.tiers)} tiers ({', '.join(t.tier for t in policy.tiers)}), "
        f"currency {policy.currency}"
    )


def validate(
    policy: Annotated[
        str, typer.Argument(metavar="POLICY", help="Policy YAML file.")
    ] = "policies.yaml",
) -> None:
    """Check a policy file: print every error as file:line:col: code: message (exit 1), or a
    one-line summary (exit 0)."""
    from rules.compile import compile_policy
    from rules.validate import load_policy

    try:
        p = load_policy(policy)
        compile_policy(p)
    except PolicyErrors as exc:
        policy_errors(exc)
    typer.echo(summary(p))


def read_request(source: str) -> Any:
    """Read a JSON request from the file ``source`` (``-`` = stdin), numbers with a fraction as
    exact ``Decimal`` (never float). Exits 2 if it cannot be read or is not JSON."""
    from engine.inputs import MAX_REQUEST_BYTES, InputErrors, parse_request_json

    name = "<stdin>" if source == "-" else source
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
        else:
            with open(source, "rb") as f:
                data = f.read(MAX_REQUEST_BYTES + 1)
    except OSError as exc:
        fail(EXIT_INPUT, f"{name}: cannot read the request: {exc.strerror or exc}")
    try:
        json.loads(data)  # a syntax error is reported as file:line:column
    except json.JSONDecodeError as exc:
        fail(EXIT_INPUT, f"{name}:{exc.lineno}:{exc.colno}: invalid_json: {exc.msg}")
    except (ValueError, RecursionError):
        pass  # size, encoding, depth: reported by the strict parser below
    try:
        return parse_request_json(data, name)
    except InputErrors as exc:
        fail(EXIT_INPUT, *(f"{e.message.replace(': ', ': invalid_json: ', 1)}" for e in exc.errors))


def decide(
    request: Annotated[
        str,
        typer.Argument(
            metavar="REQUEST.json", help="Request JSON file, or - to read it from stdin."
        ),
    ],
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Policy YAML file.")
    ] = "policies.yaml",
    fmt: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="json (the full Decision) or text (readable)."),
    ] = OutputFormat.json,
) -> None:
    """Decide one order request: approve, refer or decline, with conditions, reasons,
    escalation and the full rule trail."""
    compiled = load_compiled(policy)
    body = read_request(request)
    engine = engine_module()
    try:
        decision = engine.evaluate(compiled, body)
    except engine.InputErrors as exc:
        name = "<stdin>" if request == "-" else request
        n = len(exc.errors)
        fail(
            EXIT_INPUT,
            f"{name}: the request does not fit policy {compiled.policy.id} "
            f"{compiled.policy.version} ({n} problem{'s' if n != 1 else ''}); "
            "no decision was made:",
            *(f"  {e.path or '(request)'}: {e.code}: {e.message}" for e in exc.errors),
        )
    except engine.EvaluationError as exc:
        fail(
            EXIT_NO_DECISION,
            f"no decision was made: {exc.code}: {exc.message}",
            "treat the order as not approved (refer it to a person or retry)",
        )
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(decision.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_decision(decision))


def _money(v: Any, currency: str) -> str:
    if v is None:
        return "-"
    return f"{Decimal(v):,} {currency}"


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


def render_decision(decision: Any) -> str:
    """A ``Decision`` as readable plain text: outcome, score and tier, conditions, credit,
    reasons, escalation, the rule trail (every rule, matched or not, with the values it read
    and its effect), inputs, derived values and notes."""
    d = decision
    cur = d.currency
    out: list[str] = []
    who = []
    if d.order_id:
        who.append(f"order {d.order_id}")
    if d.customer_id:
        who.append(f"customer {d.customer_id}")
    out.append(f"Decision {d.decision_id}" + (f" ({', '.join(who)})" if who else ""))
    out.append(f"Policy   {d.policy.id} {d.policy.version} (sha256 {d.policy.sha256[:12]})")
    out.append("")
    out.append(f"Outcome  {d.outcome.upper()}")
    out.append(f"Score    {d.score} (tier {d.tier})")
    out.append(f"Order    {_money(d.order_amount, cur)}")
    out.append("")
    out.append("Conditions")
    if d.outcome == "decline":
        out.append("  none (declined)")
    else:
        out.append(f"  deposit        {d.deposit_pct} % = {_money(d.deposit_amount, cur)}")
        term = d.approved_payment_term_days
        req = d.requested_payment_term_days
        line = f"  payment term   {term} days" + (" (cash in advance)" if term == 0 else "")
        if req is not None and req != term:
            line += f", requested {req} days"
        out.append(line)
    out.append("")
    out.append("Credit")
    out.append(f"  credit limit     {_money(d.credit_limit, cur)}")
    out.append(f"  exposure after   {_money(d.exposure_after, cur)}")
    out.append(f"  available        {_money(d.available_credit, cur)}")
    out.append("")
    out.append("Reasons")
    if not d.reasons:
        out.append("  none")
    for r in d.reasons:
        out.append(f"  {r.code}: {r.message} [rule {r.rule_id}, {r.stage}]")
    out.append("")
    out.append("Escalation")
    if d.escalation is None:
        out.append("  none" + (" (not referred)" if d.outcome != "refer" else ""))
    else:
        e = d.escalation
        out.append(f"  level   {e.level} (SLA {e.sla_hours} h)")
        out.append(f"  chain   {' > '.join(e.chain)}")
        out.append(f"  basis   {e.basis} = {_money(e.basis_amount, cur)}")
    out.append("")
    out.append("Trail (x = matched)")
    width = max((len(t.rule_id) for t in d.trail.rules), default=0)
    for t in d.trail.rules:
        reads = ", ".join(f"{k}={_val(v)}" for k, v in t.reads.items()) or "-"
        effect = f" -> {t.effect}" if t.matched and t.effect else ""
        mark = "x" if t.matched else " "
        out.append(f"  [{mark}] {t.rule_id:<{width}}  {t.stage:<9}  {reads}{effect}")
    out.append("")
    out.extend(_section("Inputs", d.trail.inputs))
    out.append("")
    out.extend(_section("Derived", d.trail.derived))
    if d.trail.notes:
        out.append("")
        out.append("Notes")
        out.extend(f"  {n}" for n in d.trail.notes)
    out.append("")
    out.append(f"Engine   {d.engine_version}; evaluated at {d.evaluated_at.isoformat()}")
    return "\n".join(out)


def _section(title: str, values: dict[str, Any]) -> Iterable[str]:
    yield title
    if not values:
        yield "  none"
    width = max((len(k) for k in values), default=0)
    for k, v in values.items():
        yield f"  {k:<{width}}  {_val(v)}"


def test_policy(
    policy: Annotated[
        str, typer.Argument(metavar="POLICY", help="Policy YAML file.")
    ] = "policies.yaml",
    tests: Annotated[
        str | None,
        typer.Option("--tests", help="Tests file (default: POLICY.tests.yaml beside the policy)."),
    ] = None,
    require_full_coverage: Annotated[
        bool,
        typer.Option(
            "--require-full-coverage",
            help="Also fail (exit 1) unless every rule is matched by some case.",
        ),
    ] = False,
) -> None:
    """Run the policy's test cases (POLICY.tests.yaml): PASS/FAIL per case with the differing
    fields, then rule coverage. Exit 1 if any case fails."""
    from analysis.policytest import render, run_policy_tests, tests_path_for

    compiled = load_compiled(policy)
    tests_file = tests or str(tests_path_for(policy))
    engine = engine_module()
    try:
        report = run_policy_tests(compiled, tests_file, evaluate=engine.evaluate)
    except PolicyErrors as exc:
        n = len(exc.errors)
        fail(
            EXIT_POLICY,
            *(str(e) for e in exc.errors),
            f"{n} error{'s' if n != 1 else ''} in the tests file; no case was run",
        )
    typer.echo(render(report))
    if not report.passed:
        fail(EXIT_POLICY, f"FAILED: {len(report.failed)} of {len(report.results)} cases")
    if require_full_coverage and not report.coverage.full:
        fail(
            EXIT_POLICY,
            f"FAILED: rule coverage is {report.coverage.percent} %, "
            "--require-full-coverage needs 100 %",
        )


def backtest(
    policy: Annotated[str, typer.Argument(help="Policy YAML file.")],
    data: Annotated[str, typer.Argument(help="Labelled dataset (german.data or JSON lines).")],
    fmt: Annotated[
        DatasetFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="Dataset format; default from the file name (german.data, *.jsonl, *.ndjson).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use only the first N rows.")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Worker processes (default: all cores; 1: this process)."
        ),
    ] = None,
) -> None:
    """Replay a labelled dataset through a policy and report how its decisions compare with
    the outcomes (good/bad) in the data. Exit 2 if the data cannot be read, 3 if a worker
    process died."""
    import itertools

    compiled = load_compiled(policy)
    engine_module()
    from analysis.backtest import render, run_backtest
    from analysis.datasets import read_dataset
    from analysis.executor import ExecutorError, LocalExecutor, ProcessExecutor

    try:
        with LocalExecutor() if workers == 1 else ProcessExecutor(workers) as executor:
            rows = read_dataset(data, fmt.value if fmt else None)
            if limit is not None:
                rows = itertools.islice(rows, limit)
            result = run_backtest(compiled, rows, progress, executor)
    except OSError as exc:
        fail(EXIT_INPUT, f"{data}: cannot read the dataset: {exc.strerror or exc}")
    except ValueError as exc:  # analysis.datasets.DatasetError (file:line:col), format, label
        fail(EXIT_INPUT, f"{exc}", "the back-test was stopped; no report was made")
    except ExecutorError as exc:
        fail(EXIT_NO_DECISION, f"{exc}", "the back-test was stopped; no report was made")
    typer.echo(render(result))


def register(app: typer.Typer) -> None:
    """Add the offline commands to the root command line ``app``."""
    app.command()(validate)
    app.command()(decide)
    app.command("test")(test_policy)
    app.command()(backtest)
