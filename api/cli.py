"""The ``creditgate`` command line (Typer app ``app``; console script ``creditgate``).

Commands::

    creditgate validate [POLICY]                       check a policy file
    creditgate decide REQUEST.json [--policy P] [--format json|text]
    creditgate test [POLICY] [--require-full-coverage]  run POLICY.tests.yaml
    creditgate backtest POLICY DATA [--format german|jsonl] [--limit N] [--no-progress]
    creditgate serve [--host 127.0.0.1] [--port 8000]   run the HTTP API
    creditgate db upgrade                               apply database migrations
    creditgate keys create --role ROLE [--name N]       create an API key (printed once)
    creditgate keys list                                list the keys (id, role, name, ...)
    creditgate keys revoke KEY_ID                       revoke a key (exit 1 unknown/ambiguous)
    creditgate audit verify                             check the hash chains (exit 1 broken)

Exit codes (all commands): 0 success; 1 policy errors (or a failing policy test, or a
broken tests file); 2 the request or data does not fit (input errors, unreadable or invalid
JSON; an unknown role); 3 no decision was made (evaluation error, rule engine unavailable)
or, for ``serve``/``db``/``keys``/``audit``, the database is unavailable or not migrated
(one line: ``creditgate: database unavailable at URL (Error); is it running?``, password
masked). ``audit verify`` exits 1 when a hash chain is broken; ``keys revoke`` exits 1 for
an unknown or ambiguous key id.

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

app = typer.Typer(
    name="creditgate",
    help="Credit-approval decisions from a YAML credit policy: validate, decide, test, backtest.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
    no_args_is_help=True,
)

EXIT_POLICY = 1
EXIT_INPUT = 2
EXIT_NO_DECISION = 3


class OutputFormat(StrEnum):
    json = "json"
    text = "text"


class DatasetFormat(StrEnum):
    german = "german"
    jsonl = "jsonl"


def _err(line: str = "") -> None:
    typer.echo(line, err=True)


def _fail(code: int, *lines: str) -> NoReturn:
    for line in lines:
        _err(line)
    raise typer.Exit(code)


def _policy_errors(exc: PolicyErrors) -> NoReturn:
    n = len(exc.errors)
    _fail(
        EXIT_POLICY,
        *(str(e) for e in exc.errors),
        f"{n} error{'s' if n != 1 else ''} in the policy; nothing was evaluated",
    )


def _load_compiled(policy: str) -> Any:
    """Load, validate and compile ``policy`` (exit 1 with every error on failure)."""
    from rules.compile import compile_policy
    from rules.validate import load_policy

    try:
        return compile_policy(load_policy(policy))
    except PolicyErrors as exc:
        _policy_errors(exc)


def _engine() -> Any:
    """``engine.evaluate`` (exit 3 if the rule engine cannot be imported)."""
    try:
        from engine import evaluate as module
    except ImportError as exc:
        _fail(EXIT_NO_DECISION, f"no decision was made: the rule engine is not available ({exc})")
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
    parts = ", ".join(
        f"{stages[s]} {names[s][stages[s] != 1]}" for s in names if s in stages
    )
    return (
        f"ok: {policy.id} {policy.version} sha256:{policy.sha256[:12]} "
        f"{policy.rule_count} rules ({parts}), score {policy.min_score}..{policy.max_score}, "
        f"{len(policy.tiers)} tiers ({', '.join(t.tier for t in policy.tiers)}), "
        f"currency {policy.currency}"
    )


@app.command()
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
        _policy_errors(exc)
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
        _fail(EXIT_INPUT, f"{name}: cannot read the request: {exc.strerror or exc}")
    try:
        json.loads(data)  # a syntax error is reported as file:line:column
    except json.JSONDecodeError as exc:
        _fail(EXIT_INPUT, f"{name}:{exc.lineno}:{exc.colno}: invalid_json: {exc.msg}")
    except (ValueError, RecursionError):
        pass  # size, encoding, depth: reported by the strict parser below
    try:
        return parse_request_json(data, name)
    except InputErrors as exc:
        _fail(
            EXIT_INPUT, *(f"{e.message.replace(': ', ': invalid_json: ', 1)}" for e in exc.errors)
        )


@app.command()
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
    compiled = _load_compiled(policy)
    body = read_request(request)
    engine = _engine()
    try:
        decision = engine.evaluate(compiled, body)
    except engine.InputErrors as exc:
        name = "<stdin>" if request == "-" else request
        n = len(exc.errors)
        _fail(
            EXIT_INPUT,
            f"{name}: the request does not fit policy {compiled.policy.id} "
            f"{compiled.policy.version} ({n} problem{'s' if n != 1 else ''}); "
            "no decision was made:",
            *(f"  {e.path or '(request)'}: {e.code}: {e.message}" for e in exc.errors),
        )
    except engine.EvaluationError as exc:
        _fail(
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


@app.command("test")
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

    compiled = _load_compiled(policy)
    tests_file = tests or str(tests_path_for(policy))
    engine = _engine()
    try:
        report = run_policy_tests(compiled, tests_file, evaluate=engine.evaluate)
    except PolicyErrors as exc:
        n = len(exc.errors)
        _fail(
            EXIT_POLICY,
            *(str(e) for e in exc.errors),
            f"{n} error{'s' if n != 1 else ''} in the tests file; no case was run",
        )
    typer.echo(render(report))
    if not report.passed:
        _fail(EXIT_POLICY, f"FAILED: {len(report.failed)} of {len(report.results)} cases")
    if require_full_coverage and not report.coverage.full:
        _fail(
            EXIT_POLICY,
            f"FAILED: rule coverage is {report.coverage.percent} %, "
            "--require-full-coverage needs 100 %",
        )


@app.command()
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

    compiled = _load_compiled(policy)
    _engine()
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
        _fail(EXIT_INPUT, f"{data}: cannot read the dataset: {exc.strerror or exc}")
    except ValueError as exc:  # analysis.datasets.DatasetError (file:line:col), format, label
        _fail(EXIT_INPUT, f"{exc}", "the back-test was stopped; no report was made")
    except ExecutorError as exc:
        _fail(EXIT_NO_DECISION, f"{exc}", "the back-test was stopped; no report was made")
    typer.echo(render(result))


# -- service: serve, db, keys, audit ---------------------------------------------------------

db_app = typer.Typer(help="Database: apply migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)
audit_app = typer.Typer(help="The decision log's hash chain.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")

EXIT_UNAVAILABLE = 3


def _database_url() -> str:
    from api.settings import Settings

    return Settings().database_url


def _masked_url() -> str:
    """``DATABASE_URL`` with any password replaced by ``***``."""
    import sqlalchemy as sa

    url = _database_url()
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "the configured DATABASE_URL"


def _store() -> Any:
    """The ``Store`` for ``Settings()`` (environment: CREDITGATE_DATABASE_URL / DATABASE_URL).
    A URL that is not a database URL exits 3 with one line (never a traceback)."""
    import sqlalchemy as sa

    from api.store import Store

    try:
        return Store(_database_url())
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        _fail(
            EXIT_UNAVAILABLE,
            f"creditgate: DATABASE_URL {_masked_url()} is not a usable database URL "
            f"({type(exc).__name__})",
        )


def _unavailable(exc: Exception) -> NoReturn:
    """One line for a ``StoreUnavailable`` (password masked), exit 3."""
    from api.store import StoreNotMigrated

    cause = getattr(exc, "cause", "") or type(exc).__name__
    if isinstance(exc, StoreNotMigrated):
        _fail(
            EXIT_UNAVAILABLE,
            f"creditgate: database at {_masked_url()} is not migrated ({cause}); "
            "run 'creditgate db upgrade'",
        )
    _fail(
        EXIT_UNAVAILABLE,
        f"creditgate: database unavailable at {_masked_url()} ({cause}); is it running?",
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Run the HTTP API (uvicorn). Settings from the environment: CREDITGATE_DATABASE_URL
    (or DATABASE_URL), CREDITGATE_POLICY_PATH, CREDITGATE_MAX_REQUEST_BYTES. Logs are JSON
    lines on stderr. Exit 1 with every error if the policy is broken, or if its id and
    version are already recorded with another text; exit 3 with one line if the database
    cannot be reached."""
    import uvicorn

    from api.app import configure_logging
    from api.settings import Settings
    from api.store import PolicyVersionConflict, StoreUnavailable

    # Everything that can stop the app from starting is checked here, before uvicorn: one
    # clear line (policy errors: all of them) instead of a traceback from the app factory.
    compiled = _load_compiled(str(Settings().policy_path))
    store = _store()
    try:
        store.ping()
        store.upgrade()
        store.save_policy(compiled.policy)
    except StoreUnavailable as exc:
        _unavailable(exc)
    except PolicyVersionConflict as exc:
        _fail(EXIT_POLICY, f"creditgate: {exc}")
    finally:
        store.dispose()

    configure_logging(root=True)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (also done when the service starts)."""
    from api.store import StoreUnavailable

    try:
        before, after = _store().upgrade()
    except StoreUnavailable as exc:
        _unavailable(exc)
    if before == after:
        typer.echo(f"ok: database is up to date (schema {after})")
    else:
        typer.echo(f"ok: database migrated from schema {before or '(none: new)'} to {after}")


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="order_entry, reviewer, compliance, policy_owner or admin.",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")] = "",
) -> None:
    """Create an API key and print it once (only its sha256 is stored)."""
    from api.auth import ROLES
    from api.store import StoreUnavailable

    if role not in ROLES:
        _fail(EXIT_INPUT, f"unknown role {role!r}; expected one of: {', '.join(ROLES)}")
    try:
        key = _store().create_api_key(role, name=name)
    except StoreUnavailable as exc:
        _unavailable(exc)
    except ValueError as exc:  # a role the store does not accept
        _fail(EXIT_INPUT, f"cannot create a {role} key: {exc}")
    typer.echo(key)
    article = "an" if role[:1] in "aeiou" else "a"
    _err(f"created {article} {role} key{f' for {name}' if name else ''}; it is shown only once")


@keys_app.command("list")
def keys_list() -> None:
    """List the API keys: id (first 12 hex characters of the key's sha256, as in the
    decision log's caller), role, name, created (UTC), revoked. Keys themselves are never
    stored, so never shown."""
    from api.store import StoreUnavailable

    try:
        keys = _store().list_api_keys()
    except StoreUnavailable as exc:
        _unavailable(exc)
    rows = [
        [
            k["key_id"],
            k["role"],
            k["name"] or "-",
            k["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
            "yes" if k["revoked"] else "no",
        ]
        for k in keys
    ]
    header = ["id", "role", "name", "created (UTC)", "revoked"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    _err(f"{len(keys)} key{'s' if len(keys) != 1 else ''}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[
        str, typer.Argument(help="The id shown by 'creditgate keys list' (or a longer prefix).")
    ],
) -> None:
    """Revoke an API key by its id: from then on it gets 401. Exit 1 if the id matches no
    key or several keys (nothing is revoked then)."""
    from api.store import AmbiguousKey, StoreUnavailable, UnknownKey

    try:
        key = _store().revoke_api_key(key_id)
    except StoreUnavailable as exc:
        _unavailable(exc)
    except (UnknownKey, AmbiguousKey) as exc:
        _fail(EXIT_POLICY, f"creditgate: {exc}; nothing was revoked")
    name = f" ({key['name']})" if key["name"] else ""
    if key["already_revoked"]:
        typer.echo(f"{key['key_id']}: the {key['role']} key{name} was already revoked")
    else:
        typer.echo(f"{key['key_id']}: revoked the {key['role']} key{name}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check both hash chains (decision log, ledger events) and the ledger's consistency:
    exit 0 if intact, 1 if a record was changed, removed (also the newest ones), reordered
    or cannot be read, a customer's open orders differ from its open reservations, a
    reservation disagrees with its order's ledger events (or an approved order has none), a
    stored policy text does not hash to its sha256, or a policy the log names is not stored.
    One line per chain with the stored head (seq and record_hash): write them to an external
    log to anchor the chains (someone with write access to the database could rewrite the
    head too)."""
    from api.store import StoreUnavailable

    try:
        result = _store().verify_chain()
    except StoreUnavailable as exc:
        _unavailable(exc)
    broken = False
    for label, chain in (("decision log", result), ("ledger events", result["ledger"])):
        head = (
            f"head seq {chain['head_seq']} record_hash {chain['head_hash']}"
            if chain["head_seq"] is not None
            else "no head"
        )
        if chain["reason"] is None:
            n = chain["checked"]
            typer.echo(f"ok: {label}: {n} record{'s' if n != 1 else ''}, hash chain intact; {head}")
        else:
            broken = True
            _err(
                f"BROKEN: {label} at seq {chain['first_broken_seq']}: {chain['reason']} "
                f"({chain['checked']} records before it are intact); {head}"
            )
    consistency = result["consistency"]
    checked = (
        f"{_count(consistency['customers'], 'customer')}, "
        f"{_count(consistency['policy_versions'], 'policy text')}"
    )
    if consistency["ok"]:
        typer.echo(
            f"ok: ledger consistency: {checked}; open orders match the open reservations, "
            "reservations match the ledger events, policy texts match their sha256 and every "
            "logged policy is stored"
        )
    else:
        broken = True
        for p in consistency["problems"]:
            if p["check"] == "open_orders":
                what = f"customer {p['customer_id']}"
            elif p["check"] == "reservations":
                what = f"order {p['order_id']} (customer {p['customer_id']})"
            else:
                what = f"policy {p['sha256'][:12]}"
            _err(f"BROKEN: ledger consistency: {what}: {p['message']}")
        more = consistency["problems_total"] - len(consistency["problems"])
        if more:
            _err(f"BROKEN: ledger consistency: and {more} more problems")
    if broken:
        raise typer.Exit(EXIT_POLICY)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


if __name__ == "__main__":  # pragma: no cover
    app()
