"""``creditgate audit verify``: walk the hash chains and check the ledger's consistency
(exit 1 broken, 3 database unavailable)."""

from __future__ import annotations

import typer

from analysis.cli import EXIT_POLICY, err
from api.core.cli import open_store, unavailable

audit_app = typer.Typer(
    help="The hash chains (decision log, ledger events, customer history) and the ledger's "
    "consistency.",
    no_args_is_help=True,
)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the hash chains (decision log, ledger events, customer history) and the
    ledger's consistency:
    exit 0 if intact, 1 if a record was changed, removed (also the newest ones), reordered
    or cannot be read, a customer's open orders differ from its open reservations, a
    reservation disagrees with its order's ledger events (or an approved order has none), a
    stored policy text does not hash to its sha256, or a policy the log names is not stored.
    One line per chain with the stored head (seq and record_hash): write them to an external
    log to anchor the chains (someone with write access to the database could rewrite the
    head too)."""
    from api.core.database import StoreUnavailable

    try:
        result = open_store().audit.verify_chain()
    except StoreUnavailable as exc:
        unavailable(exc)
    broken = False
    chains = (
        ("decision log", result),
        ("ledger events", result["ledger"]),
        ("customer history", result["customer_history"]),
    )
    for label, chain in chains:
        head = (
            f"head seq {chain['head_seq']} record_hash {chain['head_hash']}"
            if chain["head_seq"] is not None
            else "no head"
        )
        if chain["moved_clock"]:
            err(
                f"NOTE: {label}: {_count(chain['moved_clock'], 'record')} written under a "
                "moved clock (CREDITGATE_CLOCK, test or development mode): test data, not "
                "real decisions"
            )
        if chain["reason"] is None:
            n = chain["checked"]
            typer.echo(f"ok: {label}: {n} record{'s' if n != 1 else ''}, hash chain intact; {head}")
        else:
            broken = True
            err(
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
            err(f"BROKEN: ledger consistency: {what}: {p['message']}")
        more = consistency["problems_total"] - len(consistency["problems"])
        if more:
            err(f"BROKEN: ledger consistency: and {more} more problems")
    if broken:
        raise typer.Exit(EXIT_POLICY)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
