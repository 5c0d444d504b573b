"""Ledger events over HTTP (SQLite and PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import pytest

from tests.helpers import ledger
from tests.helpers.ledger import problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url


def test_http_ledger_events(api):
    api.customer()
    assert api.decide().json()["outcome"] == "approve"
    r = api.event(
        event_id="INV-1", type="invoice_issued", order_id="SO-1", amount="5000.00", currency="EUR"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["effect"] == {
        "open_orders": "-5000.00",
        "open_receivables": "5000.00",
        "credit_balance": "0.00",
    }
    assert body["customer"]["open_orders"] == "7500.00"
    assert body["customer"]["open_receivables"] == "25000.00"
    assert body["customer"]["exposure"] == "32500.00"  # unchanged: never counted twice
    again = api.event(
        event_id="INV-1", type="invoice_issued", order_id="SO-1", amount="5000.00", currency="EUR"
    )
    assert again.status_code == 200 and again.json()["replayed"] is True
    problem(
        api.event(
            event_id="INV-1",
            type="invoice_issued",
            order_id="SO-1",
            amount="5000.01",
            currency="EUR",
        ),
        409,
        "conflict",
    )
    # an invoice of an order Creditgate never approved (referred, then approved by a person)
    # is still a receivable: counted as new exposure, never refused
    r = api.event(
        event_id="INV-2", type="invoice_issued", order_id="SO-X", amount="100.00", currency="EUR"
    )
    assert r.status_code == 200, r.text
    assert r.json()["effect"]["unreserved"] == "100.00"
    assert r.json()["customer"]["exposure"] == "32600.00"
    r = api.event(event_id="CAN-1", type="order_cancelled", order_id="SO-1")
    assert r.json()["customer"]["open_orders"] == "0.00"
    r = api.event(event_id="PAY-1", type="payment_received", amount="30000.00", currency="EUR")
    assert r.json()["customer"]["open_receivables"] == "0.00"
    assert r.json()["customer"]["credit_balance"] == "4900.00"
    # an amendment of a cancelled order is a conflict, and so is the same order again
    problem(api.decide(amount="100.00"), 409, "conflict")
    body = problem(api.decide(), 409, "conflict")
    assert body["detail"] == "order 'SO-1' was cancelled; decide a new order id"
    problem(
        api.event("NOBODY", event_id="X", type="credit_note", amount="1", currency="EUR"),
        404,
        "unknown_customer",
    )
    problem(
        api.event(event_id="X", type="credit_note", amount="1", currency="EUR", role="reviewer"),
        403,
        "forbidden",
    )


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        ({"type": "payment_received", "amount": "-5.00", "currency": "EUR"}, "amount", "below_min"),
        ({"type": "payment_received", "amount": "0", "currency": "EUR"}, "amount", "below_min"),
        (
            {"type": "payment_received", "amount": 5.5, "currency": "EUR"},
            "amount",
            "inexact_number",
        ),
        (
            {"type": "payment_received", "amount": "5.001", "currency": "EUR"},
            "amount",
            "too_many_decimals",
        ),
        ({"type": "refund", "amount": "5", "currency": "EUR"}, "type", "invalid_value"),
        ({"type": "credit_note", "amount": "5", "currency": "USD"}, "currency", "not_accepted"),
        ({"type": "credit_note", "amount": "5", "currency": "EUR", "x": 1}, "x", "unknown_field"),
    ],
)
def test_http_bad_events_are_422(api, body, path, code):
    api.customer()
    b = problem(api.event(event_id="E-1", **body), 422)
    assert any(e["path"] == path and e["code"] == code for e in b["errors"]), b
    assert api.store.ledger.list_events("CUST-1") == []


def test_an_event_that_would_take_the_ledger_past_its_range_is_refused(api):
    """Exposure and credit balance stay below 10^15 (what a decision can read): the event
    that would reach it is a 422 naming the amount, nothing moved (not a 500 on the
    database's column, nor a customer no order can be decided for)."""
    big = "999999999999999.99"
    api.customer(open_receivables="0.00")
    ok = api.event(event_id="P1", type="payment_received", amount=big, currency="EUR")
    assert ok.status_code == 200, ok.text
    assert ok.json()["customer"]["credit_balance"] == big
    body = problem(
        api.event(event_id="P2", type="payment_received", amount="0.01", currency="EUR"),
        422,
        "invalid_request",
    )
    assert body["errors"][0]["path"] == "amount" and "10^15" in body["detail"]
    api.customer("CUST-2", open_receivables="999999999999000.00")
    body = problem(
        api.event(
            "CUST-2",
            event_id="I1",
            type="invoice_issued",
            order_id="SO-X",
            amount="1000.00",
            currency="EUR",
        ),
        422,
        "invalid_request",
    )
    assert body["errors"][0]["path"] == "amount"
    after = api.client.get("/v1/customers/CUST-2", headers=api.h()).json()
    assert after["open_receivables"] == "999999999999000.00"
    assert after["credit_balance"] == "0.00"
    events = api.client.get("/v1/customers/CUST-1", headers=api.h()).json()
    assert events["credit_balance"] == big
    # what lowers it always goes through: an invoice uses the credit balance up
    used = api.event(
        event_id="I2", type="invoice_issued", order_id="SO-Y", amount="10.00", currency="EUR"
    )
    assert used.status_code == 200, used.text
    assert used.json()["customer"]["credit_balance"] == "999999999999989.99"
