"""``creditgate audit verify``: walk the hash chains and check the ledger's consistency
(exit 1 broken, 3 database unavailable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from analysis.cli import EXIT_INPUT, EXIT_POLICY, err, fail
from api.core.cli import open_store, unavailable

MAX_FINDINGS = 100  # anchor findings printed by verify --anchors (all are counted)

audit_app = typer.Typer(
    help="The hash chains (decision log, ledger events, customer history) and the ledger's "
    "consistency.",
    no_args_is_help=True,
)


@audit_app.command("verify")
def audit_verify(
    anchors: Annotated[
        Path | None,
        typer.Option(
            "--anchors",
            help="An anchor file written by 'creditgate audit anchor': also check the file's "
            "own hash chain and that every chain still holds each anchored head (the record "
            "at that seq with that hash); a chain that falls short of an anchor is broken.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Check the hash chains (decision log, ledger events, customer history) and the
    ledger's consistency:
    exit 0 if intact, 1 if a record was changed, removed (also the newest ones), reordered
    or cannot be read, a customer's open orders differ from its open reservations, a
    reservation disagrees with its order's ledger events (or an approved order has none), a
    reservation or ledger event names a decision the log does not hold, a
    stored policy text does not hash to its sha256, or a policy the log names is not stored.
    One line per chain with the stored head (seq and record_hash): write them to an external
    log to anchor the chains (someone with write access to the database could rewrite the
    head too; 'creditgate audit anchor' does that, and '--anchors' checks against it)."""
    from api.core.database import StoreUnavailable

    store = open_store()
    try:
        result = store.audit.verify_chain()
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
            if p["check"] == "decisions_missing":  # the message names the customer
                err(f"BROKEN: ledger consistency: {p['message']}")
                continue
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
    if anchors is not None:
        try:
            broken = _verify_anchors(store, anchors) or broken
        except StoreUnavailable as exc:
            unavailable(exc)
    if broken:
        raise typer.Exit(EXIT_POLICY)


def _verify_anchors(store: Any, path: Path) -> bool:
    """Check the anchor file's own chain and every anchored head of this business unit
    against its chain; print the findings (``BROKEN:``, with the anchor's line number) or
    one ``ok:`` line. Returns whether anything was found."""
    from api.audit.anchors import read_anchors
    from api.audit.persistence import CHAINS

    findings: list[tuple[int, str]] = []  # (anchor file line, finding)
    anchored: dict[str, dict[int, list[tuple[int, str, str]]]] = {}  # chain → seq → lines
    lines = 0
    unit = store.db.unit
    try:
        for n, anchor, problem in read_anchors(path):
            lines = n
            if problem is not None:
                findings.append((n, f"anchor file {path}: {problem.removeprefix('anchor file ')}"))
            if anchor is None or problem is not None or anchor["business_unit"] != unit:
                continue  # an edited line proves nothing; another unit's is not ours
            if anchor["chain"] not in CHAINS:
                findings.append(
                    (n, f"anchor file {path}: line {n}: unknown chain {anchor['chain'][:40]!r}")
                )
            elif anchor["head_seq"] > 0:
                anchored.setdefault(anchor["chain"], {}).setdefault(anchor["head_seq"], []).append(
                    (n, anchor["head_hash"], anchor["anchored_at"])
                )
    except OSError as exc:
        fail(EXIT_INPUT, f"creditgate: cannot read the anchor file {path}: {exc.strerror or exc}")
    newest: dict[str, int] = {}
    for name, by_seq in anchored.items():
        label = CHAINS[name][0]
        held = store.audit.records_at(name, set(by_seq))
        newest[name] = max(by_seq)
        for seq in sorted(by_seq):
            for n, want, at in by_seq[seq]:
                if seq not in held:
                    what = "missing"
                elif held[seq] != want:
                    what = "has another hash"
                else:
                    continue
                findings.append(
                    (
                        n,
                        f"{label} falls short of anchor {n}: seq {seq} {what} (anchored "
                        f"{at[:40]}; {path} line {n})",
                    )
                )
    if not findings:
        heads = ", ".join(
            f"{CHAINS[name][0]} up to seq {seq}" for name, seq in sorted(newest.items())
        )
        typer.echo(
            f"ok: anchors: {path}: {lines} line{'s' if lines != 1 else ''}, the file's own hash "
            f"chain intact; every anchored head is in its chain ({heads or 'no records anchored'})"
        )
        return False
    for _, f in sorted(findings)[:MAX_FINDINGS]:
        err(f"BROKEN: {f}")
    if len(findings) > MAX_FINDINGS:
        err(f"BROKEN: anchors: and {len(findings) - MAX_FINDINGS} more findings")
    return True


@audit_app.command("anchor")
def audit_anchor(
    to: Annotated[
        Path,
        typer.Option(
            "--to",
            help="The anchor file: one JSON line per chain is appended (created if missing). "
            "Keep it outside the database: another machine, append-only (WORM) storage.",
            dir_okay=False,
        ),
    ],
) -> None:
    """Append the heads of the three hash chains (decision log, ledger events, customer
    history) to an anchor file outside the database: per chain one JSON line with its name,
    the business unit, the head's seq and record_hash, the service clock's time, and the
    line's own hash chained to the file's previous line. Run it from cron; 'creditgate
    audit verify --anchors FILE' then finds a chain cut back or rewritten below an anchor,
    even with its stored head rewritten to match. Exit 1 (nothing appended) if a chain is
    broken or the file's last line is no anchor, 2 if the file cannot be written, 3 if the
    database is unavailable."""
    from api.audit.anchors import AnchorFileError, append_anchors
    from api.audit.persistence import CHAINS
    from api.core.chain import timestamp
    from api.core.database import StoreUnavailable

    store = open_store()
    try:
        walked = store.audit.chain_heads()
    except StoreUnavailable as exc:
        unavailable(exc)
    broken = [
        f"creditgate: {CHAINS[name][0]} at seq {c['first_broken_seq']}: {c['reason']}; "
        "nothing was anchored: run 'creditgate audit verify'"
        for name, c in walked.items()
        if not c["ok"]
    ]
    if broken:
        fail(EXIT_POLICY, *broken)
    heads = [
        {"chain": name, "head_seq": c["head_seq"], "head_hash": c["head_hash"]}
        for name, c in walked.items()
    ]
    try:
        lines = append_anchors(to, heads, timestamp(store.db.clock.now()), store.db.unit)
    except AnchorFileError as exc:
        fail(EXIT_POLICY, f"creditgate: anchor file {to}: {exc}")
    except OSError as exc:
        fail(
            EXIT_INPUT,
            f"creditgate: cannot append to the anchor file {to}: {exc.strerror or exc}",
        )
    for line in lines:
        typer.echo(
            f"anchored: {CHAINS[line['chain']][0]}: head seq {line['head_seq']} record_hash "
            f"{line['head_hash']} to {to}"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
