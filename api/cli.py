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
    creditgate audit verify [--anchors FILE]            check the hash chains (exit 1 broken)
    creditgate audit anchor --to FILE                   append the chain heads to FILE

The offline commands (validate, decide, test, backtest) are ``analysis.cli``; each database
sub-app sits in its domain (``api.core.cli`` db, ``api.keys.cli``, ``api.audit.cli``).

Exit codes (all commands): 0 success; 1 policy errors (or a failing policy test, or a
broken tests file); 2 the request or data does not fit (input errors, unreadable or invalid
JSON; an unknown role); 3 no decision was made (evaluation error, rule engine unavailable)
or, for ``serve``/``db``/``keys``/``audit``, the database is unavailable or not migrated
(one line: ``creditgate: database unavailable at URL (Error); is it running?``, password
masked). ``audit verify`` exits 1 when a hash chain is broken; ``keys revoke`` exits 1 for
an unknown or ambiguous key id.
"""

from __future__ import annotations

from typing import Annotated

import typer

from analysis import cli as offline
from analysis.cli import EXIT_POLICY, fail, load_compiled
from api.audit.cli import audit_app
from api.core.cli import db_app, load_settings, open_store, unavailable
from api.keys.cli import keys_app

app = typer.Typer(
    name="creditgate",
    help="Credit-approval decisions from a YAML credit policy: validate, decide, test, backtest.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
    no_args_is_help=True,
)
offline.register(app)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes (each with its own decision writer; on PostgreSQL they "
            "share the load safely; on SQLite one writer at a time holds the database).",
        ),
    ] = 1,
) -> None:
    """Run the HTTP API (uvicorn with uvloop and httptools). Settings from the environment:
    CREDITGATE_DATABASE_URL (or DATABASE_URL), CREDITGATE_POLICY_PATH,
    CREDITGATE_MAX_REQUEST_BYTES, CREDITGATE_MODE and CREDITGATE_CLOCK (api/core/settings.py).
    Logs are JSON lines on stderr. With several workers /metrics adds up every worker
    (PROMETHEUS_MULTIPROC_DIR: kept if set, else a fresh temporary directory; emptied at
    start). Exit 1 with every error if the policy is broken, or if its id and version are
    already recorded with another text; exit 2 for an invalid setting; exit 3 with one line
    if the database cannot be reached."""
    import uvicorn

    from api.core.database import StoreUnavailable
    from api.core.logs import configure_logging
    from api.policies.exceptions import PolicyVersionConflict

    # Everything that can stop the app from starting is checked here, before uvicorn: one
    # clear line (policy errors: all of them) instead of a traceback from the app factory.
    settings = load_settings()
    compiled = load_compiled(str(settings.policy_path))
    store = open_store(create=True)
    try:
        store.ping()
        store.upgrade()
        store.policies.save(compiled.policy)
    except StoreUnavailable as exc:
        unavailable(exc)
    except PolicyVersionConflict as exc:
        fail(EXIT_POLICY, f"creditgate: {exc}")
    finally:
        store.dispose()

    configure_logging(root=True)
    if workers > 1:
        metrics_directory()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,  # uvloop and httptools are picked when installed (uvicorn[standard])
    )


def metrics_directory() -> str:
    """The directory of prometheus-client's multiprocess mode, set in the environment the
    workers inherit: ``PROMETHEUS_MULTIPROC_DIR`` if given (its old ``*.db`` files removed:
    the counters of earlier runs and dead workers must not be added in), else a new
    temporary directory."""
    import glob
    import os
    import tempfile

    from api.core.metrics import MULTIPROC_ENV

    path = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="creditgate-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    os.environ[MULTIPROC_ENV] = path
    return path


if __name__ == "__main__":  # pragma: no cover
    app()
