"""Customers over HTTP: PUT and GET, facts checked against the policy, customer ids, CSV
import errors and messages (on a SQLite file; tests/helpers/sqlite_api.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import PRIME, Api, problem, sql

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api


def test_put_and_get_customer(api: Api) -> None:
    c = api.customer("CUST-7", credit_limit="2500.50", days_past_due=3)
    assert c["credit_limit"] == "2500.50"
    assert c["exposure"] == "20000.00"
    assert c["days_past_due"] == 3
    # stored as checked against the policy: a decimal input as its exact string
    assert c["facts"] == {"years_in_business": "12", "risk_class": "low", "avg_days_late": "0.4"}
    got = api.client.get("/v1/customers/CUST-7", headers=api.h("order_entry")).json()
    assert got == c


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        ({"currency": "EUR", "credit_limit": 100.5}, "credit_limit", "inexact_number"),
        ({"currency": "EUR", "credit_limit": "-1.00"}, "credit_limit", "below_min"),
        ({"currency": "EUR", "credit_limit": "1.001"}, "credit_limit", "too_many_decimals"),
        ({"currency": "USD", "credit_limit": "1.00"}, "currency", "currency_mismatch"),
        ({"currency": "EUR"}, "credit_limit", "missing"),
        (
            {"currency": "EUR", "credit_limit": "1", "open_orders": "5"},
            "open_orders",
            "unknown_field",
        ),
        (
            {"currency": "EUR", "credit_limit": "1", "facts": {"credit_limit": "5"}},
            "facts.credit_limit",
            "ledger_field",
        ),
        (
            {"currency": "EUR", "credit_limit": "1", "facts": {"a.b.c": 1}},
            "facts.a.b.c",
            "unknown_fact",
        ),
        (
            {"currency": "EUR", "credit_limit": "1", "facts": {"overdue_amount": 2.5}},
            "facts.overdue_amount",
            "inexact_number",
        ),
    ],
)
def test_put_customer_invalid_is_422(api: Api, body: dict, path: str, code: str) -> None:
    r = api.client.put("/v1/customers/CUST-1", headers=api.h(), json=body)
    b = problem(r, 422, "invalid_request")
    assert any(e["code"] == code and e["path"].startswith(path) for e in b["errors"]), b
    assert api.store.customers.get("CUST-1") is None


def test_put_customer_facts_are_checked_against_the_policy_all_errors_at_once(api: Api) -> None:
    body = {
        "currency": "EUR",
        "credit_limit": "1000.00",
        "facts": {
            "risk_clas": "low",
            "customer.years_in_business": "-1",
            "country_risk": "excellent",
            "blacklisted": "no",
            "disputed_invoices": "1.5",
            "exposure": "10.00",
            "customer.credit_limit": "5.00",
            "days_past_due": 4,
            "id": "X",
        },
    }
    r = api.client.put("/v1/customers/CUST-1", headers=api.h(), json=body)
    b = problem(r, 422, "invalid_request")
    got = {e["path"]: (e["code"], e["message"]) for e in b["errors"]}
    assert {p: c for p, (c, _) in got.items()} == {
        "facts.risk_clas": "unknown_fact",
        "facts.customer.years_in_business": "below_min",
        "facts.country_risk": "invalid_value",
        "facts.blacklisted": "invalid_type",
        "facts.disputed_invoices": "too_many_decimals",
        "facts.exposure": "ledger_field",
        "facts.customer.credit_limit": "ledger_field",
        "facts.days_past_due": "ledger_field",
        "facts.id": "ledger_field",
    }, b["errors"]
    assert "did you mean 'risk_class'?" in got["facts.risk_clas"][1]
    assert "top-level field 'credit_limit'" in got["facts.customer.credit_limit"][1]
    assert "top-level field 'days_past_due'" in got["facts.days_past_due"][1]
    assert "top-level field 'open_receivables'" in got["facts.exposure"][1]
    assert "URL" in got["facts.id"][1]
    assert "['low', 'medium', 'high']" in got["facts.country_risk"][1]
    assert b["detail"].startswith("9 problems")
    assert api.store.customers.get("CUST-1") is None
    # the same facts, valid: stored as the policy types them (bool, enum, int, exact decimal
    # without trailing zeros: "1.50" and "1.5" are one value; money in cents)
    ok = {
        "risk_class": "low",
        "customer.years_in_business": 3,
        "blacklisted": False,
        "disputed_invoices": 2,
        "avg_days_late": "1.50",
        "overdue_amount": "10",
    }
    c = api.customer(facts=ok)
    assert c["facts"] == {
        "risk_class": "low",
        "years_in_business": "3",
        "blacklisted": False,
        "disputed_invoices": 2,
        "avg_days_late": "1.5",
        "overdue_amount": "10.00",
    }


def test_put_customer_in_another_currency_says_customers_use_the_policy_currency(
    api: Api,
) -> None:
    r = api.client.put(
        "/v1/customers/CUST-1",
        headers=api.h(),
        json={"currency": "USD", "credit_limit": "1000.00"},
    )
    b = problem(r, 422, "invalid_request")
    assert b["errors"] == [
        {
            "path": "currency",
            "code": "currency_mismatch",
            "message": "customers are kept in the policy currency EUR only, not USD: send the "
            "credit limit and receivables in EUR (orders in another currency are converted "
            "with the rates of PUT /v1/fx-rates)",
        }
    ]
    assert api.store.customers.get("CUST-1") is None


def test_put_customer_is_admin_only(api: Api) -> None:
    r = api.client.put(
        "/v1/customers/CUST-1",
        headers=api.h("order_entry"),
        json={"currency": "EUR", "credit_limit": "1.00"},
    )
    problem(r, 403, "forbidden")


def test_csv_import_errors_are_capped(api: Api) -> None:
    from api.core.problems import MAX_ERRORS

    lines = ["customer_id,currency,credit_limit"] + [f"C{i},EUR,not-a-number" for i in range(250)]
    r = api.client.post(
        "/v1/customer-imports",
        headers={**api.h(), "Content-Type": "text/csv"},
        content="\n".join(lines).encode(),
    )
    body = problem(r, 422, "invalid_request")
    assert len(body["errors"]) == MAX_ERRORS == 100
    assert body["errors_total"] == 250
    assert "and 150 more" in body["detail"]
    assert body["errors"][0]["path"].startswith("line 2")
    assert body["errors"][0]["code"] == "invalid_row"


def test_short_error_lists_have_no_total(api: Api) -> None:
    body = problem(api.decide(amount="-1.234", payment_term_days="x"), 422, "invalid_request")
    assert 0 < len(body["errors"]) < 100
    assert "errors_total" not in body


@pytest.mark.parametrize("segment", ["%20B5%20", "B5%20", "a%25b", "a%23b", "a%5Cb", "%09B5"])
def test_customer_ids_must_be_one_clean_url_path_segment(api: Api, segment: str) -> None:
    body = {"currency": "EUR", "credit_limit": "1.00"}
    r = api.client.put(f"/v1/customers/{segment}", headers=api.h(), json=body)
    b = problem(r, 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("customer_id", "invalid_value")]
    assert not sql(api.db, "SELECT customer_id FROM customers")


def test_customer_id_rules_in_the_csv_import_and_orders(api: Api) -> None:
    text = (
        "customer_id,currency,credit_limit\n"
        "a/b,EUR,1.00\n"
        " B5 ,EUR,1.00\n"
        "B6 ,EUR,1.00\n"
        "a?b,EUR,1.00\n"
        "OK-1,EUR,1.00\n"
    )
    r = api.client.post(
        "/v1/customer-imports", headers={**api.h(), "Content-Type": "text/csv"}, content=text
    )
    b = problem(r, 422, "invalid_request")
    assert [(e["line"], e["column"]) for e in b["errors"]] == [
        (2, "customer_id"),
        (3, "customer_id"),
        (4, "customer_id"),
        (5, "customer_id"),
    ]
    assert "URL path segment" in b["errors"][0]["message"]
    assert "spaces" in b["errors"][1]["message"]
    assert api.store.customers.get("OK-1") is None  # all or nothing
    api.customer()
    b = problem(api.decide(customer_id="a/b"), 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("customer_id", "invalid_value")]
    b = problem(api.decide(customer_id="CUST-1 "), 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("customer_id", "invalid_value")]
    # order ids stay permissive (a slash is fine) but never with surrounding spaces
    b = problem(api.decide(order_id=" SO-1"), 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("order_id", "invalid_value")]
    assert api.decide(order_id="SO/2026/1").status_code == 200
    r = api.client.post(
        "/v1/customers/CUST-1/events",
        headers=api.h("order_entry"),
        json={"event_id": "E1 ", "type": "payment_received", "amount": "1.00", "currency": "EUR"},
    )
    b = problem(r, 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("event_id", "invalid_value")]
    # the store refuses them too (other callers than the HTTP API)
    with pytest.raises(ValueError, match="URL path segment"):
        api.store.customers.put("x/y", currency="EUR", credit_limit=Decimal("1.00"))
    with pytest.raises(ValueError, match="spaces"):
        api.store.customers.put(" x", currency="EUR", credit_limit=Decimal("1.00"))


def test_messages_unknown_customer_fact_clash_and_non_utf8_csv(api: Api) -> None:
    body = problem(api.decide(customer_id="NOBODY"), 404, "unknown_customer")
    assert body["detail"] == (
        "no customer 'NOBODY' in the ledger; create it with PUT /v1/customers/NOBODY and "
        "If-None-Match: *"
    )
    api.customer(facts={**PRIME, "blacklisted": False})
    one = problem(api.decide(facts={"customer.blacklisted": True}), 422, "invalid_request")
    assert "customer.blacklisted comes from the ledger" in one["errors"][0]["message"], one
    two = problem(
        api.decide(facts={"customer.blacklisted": True, "customer.risk_class": "high"}), 422
    )
    assert "customer.blacklisted, customer.risk_class come from the ledger" in two["detail"]
    # a non-UTF-8 byte is reported on its line, with its byte offset (a BOM counted)
    data = "\ufeffcustomer_id,currency,credit_limit\nA-1,EUR,1.00\nM".encode() + b"\xfcller,EUR,1\n"
    r = api.client.post(
        "/v1/customer-imports", headers={**api.h(), "Content-Type": "text/csv"}, content=data
    )
    err = problem(r, 422, "invalid_request")["errors"][0]
    assert err["line"] == 3 and err["path"] == "line 3", err
    offset = data.index(b"\xfc")
    assert offset == 51  # 3 (BOM) + 34 (header line) + 13 (A-1 line) + 1 ("M")
    assert err["message"] == (
        f"not UTF-8: byte 0xfc at byte offset {offset} of the file; save the CSV as UTF-8"
    )
