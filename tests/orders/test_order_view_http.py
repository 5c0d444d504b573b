"""``GET /v1/orders/{order_id}`` over HTTP on SQLite and PostgreSQL (tests/helpers/ledger.py):
each status reached by real decisions and ledger events with its figures, the timeline of
an order decided, repeated, amended, partly invoiced, paid and cancelled, roles, problems
and order ids with ``/``. The service clock is injected (fixed at ``NOW``, or ticking one
second per reading from it), never today's date."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.core.test_contract import _sensitive_policy
from tests.helpers import ledger
from tests.helpers.ledger import NOW, Api, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url

AR_CSV = Path(__file__).resolve().parents[3] / "shared/data/ar-invoices/accounts-receivable.csv"


class Ticking:
    """A service clock that starts at ``NOW`` and moves one second each time it is read:
    every record gets its own instant, so the timeline's order is the order of the calls."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


def view(api: Api, order_id: str, role: str = "order_entry", **params: Any) -> dict[str, Any]:
    r = api.client.get(f"/v1/orders/{order_id}", headers=api.h(role), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def figures(body: dict[str, Any]) -> tuple:
    return (
        body["status"],
        body["approved_amount"],
        body["open_reservation"],
        body["invoiced_amount"],
        body["unreserved_amount"],
    )


def invoice(api: Api, event_id: str, order_id: str, amount: str, cid: str = "CUST-1") -> None:
    r = api.event(
        cid, event_id=event_id, type="invoice_issued", order_id=order_id, amount=amount,
        currency="EUR",
    )  # fmt: skip
    assert r.status_code == 200, r.text


def decided(api: Api, order_id: str, amount: str, outcome: str, cid: str = "CUST-1") -> str:
    r = api.decide(order_id=order_id, amount=amount, customer_id=cid)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == outcome, r.json()["reasons"]
    return r.json()["decision_id"]


def test_approved_partly_invoiced_invoiced(api):
    """An approved order of EUR 10,000.00 through its invoices: 4,000.00, then the rest."""
    api.customer()  # limit 100,000.00, receivables 20,000.00
    decision_id = decided(api, "SO-1", "10000.00", "approve")
    body = view(api, "SO-1")
    assert figures(body) == ("approved", "10000.00", "10000.00", "0.00", "0.00")
    assert (body["decision_id"], body["outcome"]) == (decision_id, "approve")
    assert (body["customer_id"], body["currency"], body["order_id"]) == ("CUST-1", "EUR", "SO-1")
    invoice(api, "INV-1", "SO-1", "4000.00")
    assert figures(view(api, "SO-1")) == (
        "partly_invoiced", "10000.00", "6000.00", "4000.00", "0.00",
    )  # fmt: skip
    invoice(api, "INV-2", "SO-1", "6000.00")
    assert figures(view(api, "SO-1")) == ("invoiced", "10000.00", "0.00", "10000.00", "0.00")
    # an invoice beyond the approved amount is unreserved exposure; still invoiced
    invoice(api, "INV-3", "SO-1", "250.00")
    assert figures(view(api, "SO-1")) == ("invoiced", "10000.00", "0.00", "10250.00", "250.00")


def test_cancelled_after_a_partial_invoice(api):
    api.customer()
    decided(api, "SO-2", "10000.00", "approve")
    invoice(api, "INV-1", "SO-2", "4000.00")
    assert api.event(event_id="CXL-1", type="order_cancelled", order_id="SO-2").status_code == 200
    body = view(api, "SO-2")
    # the approved amount stays on record; nothing of it is reserved any more
    assert figures(body) == ("cancelled", "10000.00", "0.00", "4000.00", "0.00")
    assert body["outcome"] == "approve"


def test_referred_declined_and_released_outside(api):
    api.customer()  # 20,000.00 used of 100,000.00: 90,000.00 more goes over the limit
    decided(api, "SO-R", "90000.00", "refer")
    body = view(api, "SO-R")
    assert figures(body) == ("referred", None, None, "0.00", "0.00")
    assert body["outcome"] == "refer"
    # a person released it outside Creditgate and it was invoiced: unreserved exposure
    invoice(api, "INV-R", "SO-R", "90000.00")
    body = view(api, "SO-R")
    assert figures(body) == ("invoiced", None, None, "90000.00", "90000.00")
    assert body["outcome"] == "refer"  # the decision in force is still the referral
    api.customer("CUST-B", facts={**ledger.PRIME, "blacklisted": True})
    decided(api, "SO-D", "100.00", "decline", cid="CUST-B")
    body = view(api, "SO-D")
    assert figures(body) == ("declined", None, None, "0.00", "0.00")
    assert body["customer_id"] == "CUST-B"


def test_amended_from_approve_to_refer_releases_the_figures(api):
    api.customer()
    first = decided(api, "SO-A", "10000.00", "approve")
    second = decided(api, "SO-A", "90000.00", "refer")
    body = view(api, "SO-A")
    assert figures(body) == ("referred", None, None, "0.00", "0.00")
    assert body["decision_id"] == second != first


def test_invoice_before_any_decision(api):
    """The order id is owned by the invoice's customer; its status comes from the events
    until it is decided, and the earlier invoice then counts against the approval: the
    order is counted once (tests/ledger/test_counted_once.py)."""
    api.customer()
    invoice(api, "INV-P", "SO-P", "500.00")
    body = view(api, "SO-P")
    assert figures(body) == ("invoiced", None, None, "500.00", "500.00")
    assert (body["customer_id"], body["decision_id"], body["outcome"]) == ("CUST-1", None, None)
    assert [e["entry"] for e in body["timeline"]] == ["ledger_event"]
    decided(api, "SO-P", "1000.00", "approve")
    body = view(api, "SO-P")
    # the approval reserved only the part not yet invoiced: the invoice is part of it
    assert figures(body) == ("partly_invoiced", "1000.00", "500.00", "500.00", "0.00")
    # the same instant (the clock is fixed): a decision comes first, by the stated rule
    assert [e["entry"] for e in body["timeline"]] == ["decision", "ledger_event"]


def test_timeline_of_an_order(db_url):
    """Decided, repeated, amended, partly invoiced, paid and cancelled: every entry in the
    order it happened, with its kind, its link and who did it."""
    a = Api(db_url, clock=Ticking())
    try:
        a.customer()
        new = decided(a, "SO/2026/7", "10000.00", "approve")
        repeat = a.decide(order_id="SO/2026/7", amount="10000.00")
        assert repeat.json()["kind"] == "repeat" and repeat.json()["decision_id"] == new
        amended = decided(a, "SO/2026/7", "8000.00", "approve")
        invoice(a, "INV-7", "SO/2026/7", "3000.00")
        pay = a.event(
            event_id="PAY-7", type="payment_received", order_id="SO/2026/7", amount="1000.00",
            currency="EUR",
        )  # fmt: skip
        assert pay.status_code == 200, pay.text
        cancel = a.event(event_id="CXL-7", type="order_cancelled", order_id="SO/2026/7")
        assert cancel.status_code == 200, cancel.text
        body = view(a, "SO/2026/7", role="reviewer")
        assert figures(body) == ("cancelled", "8000.00", "0.00", "3000.00", "0.00")
        assert body["decision_id"] == amended
        entries = body["timeline"]
        assert [(e["entry"], e.get("kind") or e["type"]) for e in entries] == [
            ("decision", "new"),
            ("decision", "repeat"),
            ("decision", "amended"),
            ("ledger_event", "invoice_issued"),
            ("ledger_event", "payment_received"),
            ("ledger_event", "order_cancelled"),
        ]
        times = [e["created_at"] for e in entries]
        assert times == sorted(times) and len(set(times)) == len(times)
        d_new, d_repeat, d_amended, inv, paid, cxl = entries
        assert (d_new["record_id"], d_new["decision_id"], d_new["replaces"]) == (new, new, None)
        # a repeat is a record of its own that answered the decision in force
        assert d_repeat["record_id"] != new and d_repeat["decision_id"] == new
        assert d_repeat["replaces"] is None
        assert (d_amended["decision_id"], d_amended["replaces"]) == (amended, new)
        assert [d["seq"] for d in (d_new, d_repeat, d_amended)] == [1, 2, 3]
        assert {d["outcome"] for d in (d_new, d_repeat, d_amended)} == {"approve"}
        assert d_new["policy"]["version"] == a.app.state.compiled.policy.version
        erp = a.store.keys.list()[0]["key_id"]  # the order_entry key (created first)
        fin = a.store.keys.list()[1]["key_id"]
        by_erp = (f"order_entry:{erp}", "order_entry", erp)
        for e in (d_new, d_repeat, d_amended, inv, cxl):
            assert (e["caller"], e["role"], e["key_id"]) == by_erp
        assert (paid["caller"], paid["role"]) == (f"finance:{fin}", "finance")
        assert (inv["event_id"], inv["amount"], inv["currency"]) == ("INV-7", "3000.00", "EUR")
        assert inv["effect"] == {
            "open_orders": "-3000.00",
            "open_receivables": "3000.00",
            "credit_balance": "0.00",
        }
        assert cxl["effect"]["open_orders"] == "-5000.00" and cxl["amount"] is None
        assert [e["seq"] for e in (inv, paid, cxl)] == [1, 2, 3]
    finally:
        a.store.dispose()


def test_roles(api):
    api.customer()
    decided(api, "SO-1", "100.00", "approve")
    for role in ("order_entry", "reviewer", "compliance", "admin"):
        assert view(api, "SO-1", role=role)["status"] == "approved"
    for role in ("finance", "policy_owner"):
        r = api.client.get("/v1/orders/SO-1", headers=api.h(role))
        assert "order_entry" in problem(r, 403, "forbidden")["detail"]
    problem(api.client.get("/v1/orders/SO-1"), 401, "unauthorized")


def test_order_view_masks_a_sensitive_order_amount(db_url, tmp_path):
    a = Api(db_url, policy=_sensitive_policy(tmp_path))
    try:
        a.customer()
        decided(a, "SO-M", "100.00", "approve")
        # the approved amount is the (sensitive) order amount; the decision stays visible
        body = view(a, "SO-M")
        assert (body["approved_amount"], body["open_reservation"]) == ("***", "***")
        assert body["status"] == "approved" and body["timeline"][0]["outcome"] == "approve"
    finally:
        a.store.dispose()


def test_unknown_order_and_parameters(api):
    api.customer()
    api.customer("CUST-2")
    body = problem(api.client.get("/v1/orders/SO-404", headers=api.h("order_entry")), 404)
    assert body["code"] == "unknown_order" and "SO-404" in body["detail"]
    # a payment naming an order id does not make it an order
    paid = api.event(
        event_id="PAY-1", type="payment_received", order_id="SO-X", amount="10.00",
        currency="EUR",
    )  # fmt: skip
    assert paid.status_code == 200, paid.text
    problem(api.client.get("/v1/orders/SO-X", headers=api.h("order_entry")), 404, "unknown_order")
    # once CUST-2 decides that id, the order is CUST-2's: CUST-1's payment is not in it
    decided(api, "SO-X", "100.00", "approve", cid="CUST-2")
    body = view(api, "SO-X")
    assert body["customer_id"] == "CUST-2"
    assert [e["entry"] for e in body["timeline"]] == ["decision"]
    r = api.client.get("/v1/orders/SO-X?status=approved", headers=api.h("order_entry"))
    errors = problem(r, 422, "invalid_request")["errors"]
    assert [(e["path"], e["code"]) for e in errors] == [("query.status", "unknown_parameter")]
    r = api.client.get(f"/v1/orders/{'x' * 201}", headers=api.h("order_entry"))
    problem(r, 422, "invalid_request")


def test_order_ids_with_slash_and_reserved_characters(api):
    api.customer()
    decided(api, "SO/2026/1", "100.00", "approve")
    decided(api, "SO?1#2%3", "200.00", "approve")
    assert view(api, "SO/2026/1")["order_id"] == "SO/2026/1"
    assert view(api, "SO%2F2026%2F1")["order_id"] == "SO/2026/1"  # the same order
    body = view(api, "SO%3F1%232%253")
    assert (body["order_id"], body["approved_amount"]) == ("SO?1#2%3", "200.00")
    problem(api.client.get("/v1/orders/SO/2026", headers=api.h("order_entry")), 404)


@pytest.mark.skipif(not AR_CSV.exists(), reason=f"shared data missing: {AR_CSV}")
def test_real_invoices_of_one_customer(api):
    """The first invoices of one customer of the receivables data, each decided as an order
    and invoiced in full: every order is `invoiced` with its exact amount."""
    with AR_CSV.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["customerID"] == "0379-NEVHP"][:5]
    assert len(rows) == 5
    api.customer("0379-NEVHP", credit_limit="10000.00", open_receivables="0.00")
    for row in rows:
        order_id, amount = f"INV-{row['invoiceNumber']}", f"{float(row['InvoiceAmount']):.2f}"
        decided(api, order_id, amount, "approve", cid="0379-NEVHP")
        invoice(api, f"E-{order_id}", order_id, amount, cid="0379-NEVHP")
        assert figures(view(api, order_id)) == ("invoiced", amount, "0.00", amount, "0.00")
