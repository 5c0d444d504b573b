"""``creditgate keys``: create, list and revoke API keys (exit 3 if the database is
unavailable)."""

from __future__ import annotations

from typing import Annotated

import typer

from analysis.cli import EXIT_INPUT, EXIT_POLICY, err, fail
from api.core.cli import open_store, unavailable

keys_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)


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
    from api.core.auth import ROLES
    from api.core.database import StoreUnavailable

    if role not in ROLES:
        fail(EXIT_INPUT, f"unknown role {role!r}; expected one of: {', '.join(ROLES)}")
    try:
        key = open_store().keys.create(role, name=name)
    except StoreUnavailable as exc:
        unavailable(exc)
    except ValueError as exc:  # a role the store does not accept
        fail(EXIT_INPUT, f"cannot create a {role} key: {exc}")
    typer.echo(key)
    article = "an" if role[:1] in "aeiou" else "a"
    err(f"created {article} {role} key{f' for {name}' if name else ''}; it is shown only once")


@keys_app.command("list")
def keys_list() -> None:
    """List the API keys: id (first 12 hex characters of the key's sha256, as in the
    decision log's caller), role, name, created (UTC), revoked. Keys themselves are never
    stored, so never shown."""
    from api.core.database import StoreUnavailable

    try:
        keys = open_store().keys.list()
    except StoreUnavailable as exc:
        unavailable(exc)
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
    err(f"{len(keys)} key{'s' if len(keys) != 1 else ''}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[
        str, typer.Argument(help="The id shown by 'creditgate keys list' (or a longer prefix).")
    ],
) -> None:
    """Revoke an API key by its id: from then on it gets 401. Exit 1 if the id matches no
    key or several keys (nothing is revoked then)."""
    from api.core.database import StoreUnavailable
    from api.keys.exceptions import AmbiguousKey, UnknownKey

    try:
        key = open_store().keys.revoke(key_id)
    except StoreUnavailable as exc:
        unavailable(exc)
    except (UnknownKey, AmbiguousKey) as exc:
        fail(EXIT_POLICY, f"creditgate: {exc}; nothing was revoked")
    name = f" ({key['name']})" if key["name"] else ""
    if key["already_revoked"]:
        typer.echo(f"{key['key_id']}: the {key['role']} key{name} was already revoked")
    else:
        typer.echo(f"{key['key_id']}: revoked the {key['role']} key{name}")
