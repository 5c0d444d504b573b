"""Each order's amount counts in the customer's exposure exactly once, whatever order the
ERP's messages arrive in (issue 8, part 1; README "Exposure: each order counted once").

Every scenario runs over HTTP on SQLite and PostgreSQL (tests/helpers/ledger.py: the
service clock fixed at ``NOW``, never today's date) and reads the customer's position
(``GET /v1/customers/{id}``: exposure, open orders, open receivables, exact decimal
strings) after every step. Each ends with the audit's ledger consistency intact."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ledger
from tests.helpers.ledger import Api, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url

AR_CSV = Path(__file__).resolve().parents[3] / "shared/data/ar-invoices/accounts-receivable.csv"


def position(api: Api, cid: str = "CUST-1") -> tuple[str, str, str]:
    """(exposure, open_orders, open_receivables) as the order-entry system reads them."""
    r = api.client.get(f"/v1/customers/{cid}", headers=api.h("order_entry"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert Decimal(body["exposure"]) == Decimal(body["open_orders"]) + Decimal(
        body["open_receivables"]
    )
    return body["exposure"], body["open_orders"], body["open_receivables"]


def decide(api: Api, order_id: str, amount: str, cid: str = "CUST-1", **kw: Any) -> dict:
    r = api.decide(order_id=order_id, amount=amount, customer_id=cid, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def invoice(api: Api, event_id: str, order_id: str, amount: str, cid: str = "CUST-1") -> dict:
    r = api.event(
        cid, event_id=event_id, type="invoice_issued", order_id=order_id, amount=amount,
        currency="EUR",
    )  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


def order_figures(api: Api, order_id: str) -> tuple:
    r = api.client.get(f"/v1/orders/{order_id}", headers=api.h("order_entry"))
    assert r.status_code == 200, r.text
    b = r.json()
    return (
        b["status"],
        b["approved_amount"],
        b["open_reservation"],
        b["invoiced_amount"],
        b["unreserved_amount"],
    )


def consistent(api: Api) -> None:
    body = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
    assert body["consistency"]["problems"] == [], body["consistency"]
    assert body["ok"] is True, body


# -- (a) the invoice arrives before the credit check ----------------------------------------


@pytest.mark.skipif(not AR_CSV.exists(), reason=f"shared data missing: {AR_CSV}")
def test_invoice_before_the_credit_check_is_not_reserved_again(api):
    """Three real invoices of customer 9322-YCTQO are one order of their sum. The first
    invoice reaches the ledger before the order's credit check: the approval reserves only
    the part not yet invoiced, and the decision saw the exposure after the order once."""
    with AR_CSV.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["customerID"] == "9322-YCTQO"][:3]
    cents = Decimal("0.01")
    amounts = [Decimal(r["InvoiceAmount"]).quantize(cents) for r in rows]
    assert [str(a) for a in amounts] == ["105.92", "54.50", "92.35"]
    numbers = [r["invoiceNumber"] for r in rows]  # the invoice number is the event id
    cid, oid = "9322-YCTQO", "SO-9322-1"
    api.customer(cid, credit_limit="1000.00", open_receivables="0.00")
    assert position(api, cid) == ("0.00", "0.00", "0.00")

    first = invoice(api, numbers[0], oid, "105.92", cid)
    assert first["effect"]["unreserved"] == "105.92"  # nothing reserved yet: new exposure
    assert position(api, cid) == ("105.92", "0.00", "105.92")

    d = decide(api, oid, "252.77", cid)
    assert d["outcome"] == "approve" and d["kind"] == "new"
    assert d["exposure_after"] == "252.77"  # not 358.69: the invoice is part of the order
    assert position(api, cid) == ("252.77", "146.85", "105.92")
    assert order_figures(api, oid) == ("partly_invoiced", "252.77", "146.85", "105.92", "0.00")

    invoice(api, numbers[1], oid, "54.50", cid)
    assert position(api, cid) == ("252.77", "92.35", "160.42")
    invoice(api, numbers[2], oid, "92.35", cid)
    assert position(api, cid) == ("252.77", "0.00", "252.77")
    assert order_figures(api, oid) == ("invoiced", "252.77", "0.00", "252.77", "0.00")
    # the same order again is a repeat: nothing reserved
    again = decide(api, oid, "252.77", cid)
    assert (again["kind"], again["decision_id"]) == ("repeat", d["decision_id"])
    assert position(api, cid) == ("252.77", "0.00", "252.77")
    consistent(api)


def test_invoiced_in_full_or_beyond_before_the_credit_check(api):
    """The whole order invoiced before its check: the approval reserves nothing (the
    reservation is born fully invoiced); an invoice beyond the order stays new exposure."""
    api.customer()  # limit 100,000.00, receivables 20,000.00
    invoice(api, "INV-F", "SO-F", "10000.00")
    assert position(api) == ("30000.00", "0.00", "30000.00")
    d = decide(api, "SO-F", "10000.00")
    assert (d["outcome"], d["exposure_after"]) == ("approve", "30000.00")
    assert position(api) == ("30000.00", "0.00", "30000.00")
    assert order_figures(api, "SO-F") == ("invoiced", "10000.00", "0.00", "10000.00", "0.00")
    # nothing open: a cancel has nothing to release
    problem(api.event(event_id="CXL-F", type="order_cancelled", order_id="SO-F"), 409)

    invoice(api, "INV-G", "SO-G", "12000.00")
    assert position(api) == ("42000.00", "0.00", "42000.00")
    d = decide(api, "SO-G", "10000.00")
    assert (d["outcome"], d["exposure_after"]) == ("approve", "42000.00")
    assert position(api) == ("42000.00", "0.00", "42000.00")
    assert order_figures(api, "SO-G") == ("invoiced", "10000.00", "0.00", "12000.00", "2000.00")
    consistent(api)


def test_invoice_paid_before_the_credit_check(api):
    """Invoiced and paid before the check: the receivable is gone, nothing is reserved.
    Payments are not allocated to invoices, so the decision never counts the invoice off
    more receivables than are open: it sees at least the customer's other exposure."""
    api.customer(open_receivables="0.00")
    invoice(api, "INV-P", "SO-P", "10000.00")
    pay = api.event(event_id="PAY-P", type="payment_received", amount="10000.00", currency="EUR")
    assert pay.status_code == 200, pay.text
    assert position(api) == ("0.00", "0.00", "0.00")
    d = decide(api, "SO-P", "10000.00")
    assert d["outcome"] == "approve"
    assert d["exposure_after"] == "10000.00"  # prudent: the payment may have paid another
    assert position(api) == ("0.00", "0.00", "0.00")
    consistent(api)


# -- (b) a referred order, released by a person outside Creditgate, then invoiced -----------


def test_referred_order_invoiced_after_a_release_outside_counts_once(api):
    api.customer()
    d = decide(api, "SO-R", "90000.00")
    assert d["outcome"] == "refer"  # 110,000.00 would be over the 100,000.00 limit
    assert position(api) == ("20000.00", "0.00", "20000.00")  # a referral reserves nothing
    inv = invoice(api, "INV-R", "SO-R", "90000.00")
    assert inv["effect"]["unreserved"] == "90000.00"
    assert position(api) == ("110000.00", "0.00", "110000.00")  # once: as a receivable
    again = decide(api, "SO-R", "90000.00")
    assert (again["kind"], again["outcome"]) == ("repeat", "refer")
    assert position(api) == ("110000.00", "0.00", "110000.00")
    assert order_figures(api, "SO-R") == ("invoiced", None, None, "90000.00", "90000.00")
    consistent(api)


# -- (c) partial invoices summing to the order, and beyond it --------------------------------


def test_partial_invoices_to_the_order_and_beyond(api):
    api.customer()
    decide(api, "SO-C", "10000.00")
    assert position(api) == ("30000.00", "10000.00", "20000.00")
    invoice(api, "INV-C1", "SO-C", "2500.00")
    assert position(api) == ("30000.00", "7500.00", "22500.00")
    invoice(api, "INV-C2", "SO-C", "2500.00")
    assert position(api) == ("30000.00", "5000.00", "25000.00")
    invoice(api, "INV-C3", "SO-C", "5000.00")
    assert position(api) == ("30000.00", "0.00", "30000.00")
    # beyond the order: the receivable is real, the excess is new exposure
    over = invoice(api, "INV-C4", "SO-C", "1000.00")
    assert over["effect"] == {
        "open_orders": "0.00",
        "open_receivables": "1000.00",
        "credit_balance": "0.00",
        "unreserved": "1000.00",
    }
    assert position(api) == ("31000.00", "0.00", "31000.00")
    assert order_figures(api, "SO-C") == ("invoiced", "10000.00", "0.00", "11000.00", "1000.00")
    # an invoice that crosses the approved amount moves only the open part
    decide(api, "SO-X", "1000.00")
    assert position(api) == ("32000.00", "1000.00", "31000.00")
    cross = invoice(api, "INV-X", "SO-X", "1200.00")
    assert (cross["effect"]["open_orders"], cross["effect"]["unreserved"]) == ("-1000.00", "200.00")
    assert position(api) == ("32200.00", "0.00", "32200.00")
    consistent(api)


# -- (d) a second invoice for the same delivery -----------------------------------------------


def test_a_duplicate_invoice_message_is_idempotent_by_its_event_id(api):
    """The event id is the idempotency key: send the ERP's invoice number as ``event_id``.
    The same message again is answered as recorded (``replayed``), counted once; the same
    id with another amount is a conflict. A new event id is a new invoice — the ledger
    cannot tell a duplicate from a second delivery of the same amount, and refusing a real
    invoice would hide exposure — so it counts, as new exposure beyond the approval, until
    finance credits it."""
    api.customer()
    decide(api, "SO-D", "10000.00")
    invoice(api, "INV-2026-0042", "SO-D", "10000.00")
    assert position(api) == ("30000.00", "0.00", "30000.00")
    again = invoice(api, "INV-2026-0042", "SO-D", "10000.00")
    assert again["replayed"] is True
    assert position(api) == ("30000.00", "0.00", "30000.00")
    problem(
        api.event(
            event_id="INV-2026-0042", type="invoice_issued", order_id="SO-D", amount="9000.00",
            currency="EUR",
        ),
        409,
        "conflict",
    )  # fmt: skip
    assert position(api) == ("30000.00", "0.00", "30000.00")
    second = invoice(api, "INV-2026-0043", "SO-D", "10000.00")
    assert second["effect"]["unreserved"] == "10000.00"
    assert position(api) == ("40000.00", "0.00", "40000.00")
    assert order_figures(api, "SO-D") == ("invoiced", "10000.00", "0.00", "20000.00", "10000.00")
    note = api.event(
        event_id="CN-2026-0043", type="credit_note", order_id="SO-D", amount="10000.00",
        currency="EUR",
    )  # fmt: skip
    assert note.status_code == 200, note.text
    assert position(api) == ("30000.00", "0.00", "30000.00")
    consistent(api)


# -- (e) amendments: before any invoice, after a partial invoice -----------------------------


def test_amendment_before_an_invoice_replaces_the_reservation(api):
    api.customer()
    decide(api, "SO-E", "10000.00")
    assert position(api) == ("30000.00", "10000.00", "20000.00")
    amended = decide(api, "SO-E", "8000.00")
    assert (amended["kind"], amended["exposure_after"]) == ("amended", "28000.00")
    assert position(api) == ("28000.00", "8000.00", "20000.00")
    referred = decide(api, "SO-E", "90000.00")  # amended to more than the limit allows
    assert (referred["kind"], referred["outcome"]) == ("amended", "refer")
    assert position(api) == ("20000.00", "0.00", "20000.00")  # the reservation released
    consistent(api)


def test_amendment_after_a_partial_invoice_is_refused(api):
    api.customer()
    d = decide(api, "SO-E", "10000.00")
    invoice(api, "INV-E1", "SO-E", "3000.00")
    assert position(api) == ("30000.00", "7000.00", "23000.00")
    body = problem(api.decide(order_id="SO-E", amount="9000.00"), 409, "conflict")
    assert body["detail"] == (
        "order 'SO-E' is partly invoiced (3000.00 of 10000.00); it cannot be amended: "
        "decide a new order id"
    )
    assert position(api) == ("30000.00", "7000.00", "23000.00")
    again = decide(api, "SO-E", "10000.00")
    assert (again["kind"], again["decision_id"]) == ("repeat", d["decision_id"])
    assert position(api) == ("30000.00", "7000.00", "23000.00")
    consistent(api)


# -- (f) invoices no reservation covers: never a second reservation --------------------------


def test_an_order_with_unreserved_invoices_is_never_reserved_twice(api):
    """Referred, released by a person and partly invoiced (unreserved), then re-sent with
    changed content: the new approval reserves only what is not invoiced yet; after that
    the order is partly invoiced and cannot be amended again."""
    api.customer()
    assert decide(api, "SO-U", "90000.00")["outcome"] == "refer"
    invoice(api, "INV-U1", "SO-U", "30000.00")
    assert position(api) == ("50000.00", "0.00", "50000.00")
    d = decide(api, "SO-U", "40000.00")  # the ERP corrects the order to 40,000.00
    assert (d["kind"], d["outcome"], d["exposure_after"]) == ("amended", "approve", "60000.00")
    assert position(api) == ("60000.00", "10000.00", "50000.00")
    assert order_figures(api, "SO-U") == ("partly_invoiced", "40000.00", "10000.00", "30000.00",
                                          "0.00")  # fmt: skip
    body = problem(api.decide(order_id="SO-U", amount="45000.00"), 409, "conflict")
    assert "partly invoiced (30000.00 of 40000.00)" in body["detail"]
    assert position(api) == ("60000.00", "10000.00", "50000.00")
    invoice(api, "INV-U2", "SO-U", "10000.00")
    assert position(api) == ("60000.00", "0.00", "60000.00")
    # a cancel releases only the open part, which is none now
    problem(api.event(event_id="CXL-U", type="order_cancelled", order_id="SO-U"), 409)
    consistent(api)


def test_an_unreserved_invoice_then_a_cancel_releases_only_the_open_part(api):
    api.customer()
    invoice(api, "INV-K1", "SO-K", "4000.00")
    decide(api, "SO-K", "10000.00")
    assert position(api) == ("30000.00", "6000.00", "24000.00")
    cxl = api.event(event_id="CXL-K", type="order_cancelled", order_id="SO-K")
    assert cxl.status_code == 200, cxl.text
    assert cxl.json()["effect"]["open_orders"] == "-6000.00"
    assert position(api) == ("24000.00", "0.00", "24000.00")
    assert order_figures(api, "SO-K") == ("cancelled", "10000.00", "0.00", "4000.00", "0.00")
    consistent(api)


def test_audit_knows_a_reservation_born_invoiced(api):
    """The audit checks a reservation's invoiced amount against the chained invoices: an
    approval that took over an invoice posted before it is consistent (its invoice moved
    nothing off open orders), an edited amount is not, and a reservation written before
    this rule (nothing taken over: the invoice counted twice) still reads as it was."""
    import sqlalchemy as sa

    api.customer()
    invoice(api, "INV-T1", "SO-T", "4000.00")
    decide(api, "SO-T", "10000.00")
    consistent(api)

    def problems(sql: str) -> list[str]:
        with api.store.engine.begin() as conn:
            conn.execute(sa.text(sql))
        body = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
        return [p["message"] for p in body["consistency"]["problems"]]

    assert problems("UPDATE reservations SET invoiced = '5000.00' WHERE order_id = 'SO-T'") == [
        "open_orders is 6000.00 but its open reservations add up to 5000.00",
        "invoiced is 5000.00 but its invoice_issued events moved 0.00 (or cover 4000.00 of "
        "the amount)"
    ]
    # as the service wrote it before: the whole amount reserved after the invoice
    assert problems("UPDATE reservations SET invoiced = '0.00' WHERE order_id = 'SO-T'") == [
        "open_orders is 6000.00 but its open reservations add up to 10000.00"
    ]
    assert problems("UPDATE customers SET open_orders = '10000.00'") == []
