"""What every database command of the command line shares (``creditgate db``, ``keys``,
``audit``, ``serve``): the store from the environment, one-line errors for a database that
is unreachable or not migrated (exit 3, password masked), and the ``db`` sub-app."""

from __future__ import annotations

from typing import Any, NoReturn

import typer

from analysis.cli import fail

__all__ = ["EXIT_UNAVAILABLE", "db_app", "load_settings", "open_store", "unavailable"]

db_app = typer.Typer(help="Database: apply migrations.", no_args_is_help=True)

EXIT_UNAVAILABLE = 3


def load_settings() -> Any:
    """``Settings()`` from the environment; an invalid setting (a moved clock in production
    mode, a malformed clock, a negative window) exits 2 with one line per problem."""
    from pydantic import ValidationError

    from analysis.cli import EXIT_INPUT
    from api.core.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        fail(
            EXIT_INPUT,
            *(
                f"creditgate: setting {'.'.join(map(str, e['loc'])) or '(settings)'}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ),
        )


def database_url() -> str:
    return load_settings().database_url


def masked_url() -> str:
    """``DATABASE_URL`` with any password replaced by ``***``."""
    import sqlalchemy as sa

    url = database_url()
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "the configured DATABASE_URL"


def open_store(*, create: bool = False) -> Any:
    """The ``Store`` for ``Settings()`` (environment: CREDITGATE_DATABASE_URL / DATABASE_URL).
    A URL that is not a database URL exits 3 with one line (never a traceback). A SQLite
    file that does not exist is created only by the commands that migrate (``create``:
    ``db upgrade``, ``serve``); the others exit 3 as for a database not migrated, instead of
    leaving an empty file behind (a typo in the path)."""
    from pathlib import Path

    import sqlalchemy as sa

    from api.store import Store

    settings = load_settings()
    try:
        url = sa.make_url(settings.database_url)
        if (
            not create
            and url.get_backend_name() == "sqlite"
            and url.database not in (None, "", ":memory:")
            and not Path(url.database).exists()
        ):
            fail(
                EXIT_UNAVAILABLE,
                f"creditgate: database at {masked_url()} is not migrated (no such file); "
                "run 'creditgate db upgrade'",
            )
        return Store(settings.database_url, clock=settings.make_clock())
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        fail(
            EXIT_UNAVAILABLE,
            f"creditgate: DATABASE_URL {masked_url()} is not a usable database URL "
            f"({type(exc).__name__})",
        )


def unavailable(exc: Exception) -> NoReturn:
    """One line for a ``StoreUnavailable`` (password masked), exit 3."""
    from api.core.database import StoreNotMigrated

    cause = getattr(exc, "cause", "") or type(exc).__name__
    if isinstance(exc, StoreNotMigrated):
        fail(
            EXIT_UNAVAILABLE,
            f"creditgate: database at {masked_url()} is not migrated ({cause}); "
            "run 'creditgate db upgrade'",
        )
    fail(
        EXIT_UNAVAILABLE,
        f"creditgate: database unavailable at {masked_url()} ({cause}); is it running?",
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (also done when the service starts)."""
    from api.core.database import StoreUnavailable

    try:
        before, after = open_store(create=True).upgrade()
    except StoreUnavailable as exc:
        unavailable(exc)
    if before == after:
        typer.echo(f"ok: database is up to date (schema {after})")
    else:
        typer.echo(f"ok: database migrated from schema {before or '(none: new)'} to {after}")
