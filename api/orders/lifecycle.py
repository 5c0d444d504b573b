"""An order's status, figures and timeline, derived from what ``api.orders.persistence``
read (pure functions; no table of their own, no migration).

**Status** (``STATUSES``), the first rule that holds:

1. ``cancelled``: the order's reservation is cancelled (an ``order_cancelled`` event; only
   an approved order with an open part can be cancelled, and its id is spent). Invoices
   before or after the cancel stay in the figures.
2. The decision in force (the latest ``new`` or ``amended`` record; a ``repeat`` changes
   nothing) is an approve, so the order has a reservation — the status is that of the
   approved amount: ``invoiced`` when its invoices cover it (reservation ``invoiced``),
   ``partly_invoiced`` when part of it is invoiced, else ``approved``. An invoice posted
   before the decision counts against the approved amount (the approval reserved only the
   part not yet invoiced: the order is counted once); an invoice beyond the approved
   amount, or after a cancel, is ``unreserved_amount``.
3. No approve in force (a refer, a decline, or no decision here) but invoices of the
   order: ``invoiced`` — a person released the order outside Creditgate (or it was decided
   elsewhere) and every invoice is unreserved exposure (``unreserved_amount``). There is
   no approved amount for the invoices to fall short of, so never ``partly_invoiced``.
4. Otherwise the outcome in force: ``referred`` or ``declined``.

``closed`` (the order's invoices settled) is part of the vocabulary but **never emitted**:
payments are not yet allocated to invoices (no invoice ids, no per-invoice receivables),
so no order can be known to be settled; a later release derives it.

**Timeline**: every decision-log record of the order and every ledger event of its customer
that names it, each chain in its own ``seq`` order, the two interleaved by ``created_at``;
at the same instant a decision comes before a ledger event (the two chains record no order
between them). Each entry says who did it (``caller`` as stored: ``role:key_id``) and what
it is (``entry``: ``decision`` or ``ledger_event``; human actions come later as a third)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from api.orders.persistence import OrderRows

__all__ = ["STATUSES", "order_view", "status_of", "timeline"]

STATUSES = (
    "approved",
    "referred",
    "declined",
    "cancelled",
    "partly_invoiced",
    "invoiced",
    "closed",  # reserved: never emitted yet (module docstring)
)
ZERO = Decimal("0.00")
_OUTCOME_STATUS = {"approve": "approved", "refer": "referred", "decline": "declined"}
_CALLER = re.compile(r"^([a-z_]+):([0-9a-f]{12})$")


def _in_force(rows: OrderRows) -> dict[str, Any] | None:
    """The decision in force: the latest ``new`` or ``amended`` record (None: no decision)."""
    made = [d for d in rows.decisions if d["kind"] != "repeat"]
    return made[-1] if made else None


def status_of(rows: OrderRows) -> str:
    """The order's status (module docstring, rules 1-4)."""
    res = rows.reservation
    if res is not None and res["status"] == "cancelled":
        return "cancelled"
    decision = _in_force(rows)
    outcome = decision["outcome"] if decision is not None else None
    if outcome == "approve" and res is not None:
        if res["status"] == "invoiced":
            return "invoiced"
        return "partly_invoiced" if res["invoiced"] > 0 else "approved"
    if any(e["type"] == "invoice_issued" for e in rows.events):
        return "invoiced"
    if outcome is None:  # pragma: no cover - an order without a decision has an invoice
        raise ValueError(f"order {rows.order_id!r} has neither a decision nor an invoice")
    return _OUTCOME_STATUS[outcome]


def _who(caller: str) -> dict[str, Any]:
    """``caller`` as stored, and its role and key id when it is ``role:key_id``."""
    match = _CALLER.match(caller or "")
    role, key_id = (match.group(1), match.group(2)) if match else (None, None)
    return {"caller": caller, "role": role, "key_id": key_id}


def timeline(rows: OrderRows) -> list[dict[str, Any]]:
    """The order's entries, oldest first (module docstring: the order rule)."""
    decisions, in_force = [], None
    for d in rows.decisions:
        kind = d["kind"]
        entry = {
            "entry": "decision",
            "created_at": d["created_at"],
            "seq": d["seq"],
            "record_id": d["decision_id"],
            # a repeat answers the decision in force (its own id is the record's)
            "decision_id": in_force if kind == "repeat" and in_force else d["decision_id"],
            "kind": kind,
            "replaces": in_force if kind == "amended" else None,
            "outcome": d["outcome"],
            "policy": {
                "id": d["policy_id"],
                "version": d["policy_version"],
                "sha256": d["policy_sha256"],
            },
            **_who(d["caller"]),
        }
        if kind != "repeat":
            in_force = d["decision_id"]
        decisions.append(entry)
    events = [
        {
            "entry": "ledger_event",
            "created_at": e["created_at"],
            "seq": e["seq"],
            "event_id": e["event_id"],
            "type": e["type"],
            "amount": e["amount"],
            "currency": e["currency"],
            "effect": dict(e["effect"]),
            **_who(e["caller"]),
        }
        for e in rows.events
    ]
    merged: list[dict[str, Any]] = []
    i = j = 0
    while i < len(decisions) or j < len(events):
        # each chain stays in seq order; a decision first at the same instant
        if j == len(events) or (
            i < len(decisions) and decisions[i]["created_at"] <= events[j]["created_at"]
        ):
            merged.append(decisions[i])
            i += 1
        else:
            merged.append(events[j])
            j += 1
    return merged


def order_view(rows: OrderRows, *, amount_masked: bool = False) -> dict[str, Any]:
    """The answer of ``GET /v1/orders/{order_id}``: status, figures and timeline. With
    ``amount_masked`` (the policy marks ``order.amount`` sensitive), the approved amount and
    its open part show ``"***"`` like the order amount in every read of the log."""
    res = rows.reservation
    decision = _in_force(rows)
    invoices = [e for e in rows.events if e["type"] == "invoice_issued"]
    invoiced = sum((e["amount"] for e in invoices), ZERO)
    # What no reservation covers: the invoices less what the reservation counts as invoiced
    # (moved off open orders by its invoices, or taken over by the approval from invoices
    # posted before it). The same as the sum of the events' ``effect.unreserved`` unless
    # an approval took earlier invoices over, which their effects could not know.
    unreserved = invoiced
    approved = open_part = None
    if res is not None:
        unreserved = invoiced - res["invoiced"]
        approved = res["amount"]
        open_part = res["amount"] - res["invoiced"] if res["status"] == "open" else ZERO
    if amount_masked:
        approved = "***" if approved is not None else None
        open_part = "***" if open_part is not None else None
    return {
        "order_id": rows.order_id,
        "customer_id": rows.customer_id,
        "status": status_of(rows),
        "currency": rows.currency,
        "decision_id": decision["decision_id"] if decision is not None else None,
        "outcome": decision["outcome"] if decision is not None else None,
        "approved_amount": approved,
        "open_reservation": open_part,
        "invoiced_amount": invoiced,
        "unreserved_amount": unreserved,
        "timeline": timeline(rows),
    }
