"""The CSV import (all or nothing, every bad row listed, booleans, ledger columns, empty
cells) and updates that keep what they leave out, in the store and over HTTP (SQLite and
PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from api.customers.exceptions import ImportErrors
from tests.helpers import ledger
from tests.helpers.ledger import PRIME, D, customer, ev, event, order, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
compiled = ledger.compiled
db_url = ledger.db_url
pg_url = ledger.pg_url
store = ledger.store


def _row(cid, line, **kw):
    return {
        "customer_id": cid,
        "line": line,
        "currency": "EUR",
        "credit_limit": D("1000.00"),
        "open_receivables": D("0.00"),
        "days_past_due": 0,
        "facts": dict(PRIME),
        **kw,
    }


def test_import_is_all_or_nothing(store, compiled):
    customer(store, "C1")
    store.decisions.decide(order("O1", "100.00"), ev(compiled), "erp")
    with store.engine.begin() as conn:  # C1 has open orders in another currency
        conn.execute(sa.text("UPDATE customers SET currency = 'CHF' WHERE customer_id = 'C1'"))
    with pytest.raises(ImportErrors) as err:
        store.customers.import_rows([_row("NEW", 2), _row("C1", 3)])
    assert [(e["line"], e["column"]) for e in err.value.errors] == [(3, "currency")]
    assert store.customers.get("NEW") is None
    assert store.customers.import_rows([_row("NEW", 2), _row("N2", 3, days_past_due=4)]) == 2
    assert store.customers.get("N2")["days_past_due"] == 4


CSV_OK = (
    "customer_id,currency,credit_limit,open_receivables,days_past_due,customer.risk_class,"
    "customer.years_in_business,customer.new_customer,customer.avg_days_late\n"
    "A-1,EUR,50000.00,1200.50,0,low,12,false,0.4\n"
    "A-2,EUR,1000,,3,high,1.5,TRUE,\n"
)


def test_http_csv_import(api):
    r = api.client.post(
        "/v1/customer-imports",
        headers=api.h(**{"Content-Type": "text/csv"}),
        content=CSV_OK.encode(),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 2}
    a1 = api.store.customers.get("A-1")
    assert a1["credit_limit"] == D("50000.00") and a1["open_receivables"] == D("1200.50")
    assert a1["facts"] == {
        "risk_class": "low",
        "years_in_business": "12",
        "new_customer": False,
        "avg_days_late": "0.4",
    }
    a2 = api.store.customers.get("A-2")
    assert a2["days_past_due"] == 3 and a2["open_receivables"] == 0
    assert a2["facts"] == {"risk_class": "high", "years_in_business": "1.5", "new_customer": True}
    d = api.decide(customer_id="A-1", amount="100.00")
    assert d.status_code == 200 and d.json()["outcome"] == "approve", d.text


def test_http_csv_import_names_a_semicolon_separated_file(api):
    """A ';'-separated export (a European spreadsheet) is refused with the way out named,
    nothing imported."""
    text = CSV_OK.replace(",", ";")
    r = api.client.post(
        "/v1/customer-imports",
        headers=api.h(**{"Content-Type": "text/csv"}),
        content=text.encode(),
    )
    body = problem(r, 422)
    first = body["errors"][0]
    assert first["path"].startswith("line 1.customer_id;currency"), first
    assert "separated by ';'" in first["message"] and "comma delimited" in first["message"]
    assert api.store.customers.get("A-1") is None


def test_http_csv_import_lists_every_bad_row_and_writes_nothing(api):
    text = (
        "customer_id,currency,credit_limit,open_receivables,days_past_due,customer.risk_class\n"
        "B-1,EUR,100.00,0,0,low\n"
        "B-2,USD,-5,0,0,low\n"
        "B-3,EUR,1.001,x,-1,excellent\n"
        "B-1,EUR,100.00,0,0,low\n"
        "B-4,EUR,100\n"
    )
    r = api.client.post(
        "/v1/customer-imports", headers=api.h(**{"Content-Type": "text/csv"}), content=text.encode()
    )
    b = problem(r, 422, "invalid_request")
    got = {(e["line"], e["column"]) for e in b["errors"]}
    assert got == {
        (3, "currency"),
        (3, "credit_limit"),
        (4, "credit_limit"),
        (4, "open_receivables"),
        (4, "days_past_due"),
        (4, "customer.risk_class"),
        (5, "customer_id"),
        (6, ""),
    }, b["errors"]
    assert all(e["message"] for e in b["errors"])
    assert api.store.customers.get("B-1") is None
    # header problems
    bad_header = "customer_id,currency,colour,customer.exposure,customer.nope\nX,EUR,1,2,3\n"
    r = api.client.post(
        "/v1/customer-imports",
        headers=api.h(**{"Content-Type": "text/csv"}),
        content=bad_header.encode(),
    )
    b = problem(r, 422)
    assert {(e["line"], e["column"]) for e in b["errors"]} == {
        (1, "colour"),
        (1, "customer.exposure"),
        (1, "customer.nope"),
        (1, "credit_limit"),
    }
    problem(
        api.client.post(
            "/v1/customer-imports", headers=api.h(**{"Content-Type": "text/csv"}), content=b""
        ),
        422,
    )
    problem(api.client.post("/v1/customer-imports", headers=api.h(), json={"a": 1}), 415)
    problem(
        api.client.post(
            "/v1/customer-imports",
            headers=api.h("order_entry", **{"Content-Type": "text/csv"}),
            content=CSV_OK.encode(),
        ),
        403,
        "forbidden",
    )


def test_http_csv_import_booleans_are_true_false_as_json_or_spreadsheets_write_them(api):
    head = "customer_id,currency,credit_limit,customer.new_customer,customer.blacklisted\n"
    good = head + "G-1,EUR,100,true,FALSE\nG-2,EUR,100,TRUE,false\n"
    r = api.client.post(
        "/v1/customer-imports", headers=api.h(**{"Content-Type": "text/csv"}), content=good.encode()
    )
    assert r.status_code == 200, r.text
    assert api.store.customers.get("G-1")["facts"] == {"new_customer": True, "blacklisted": False}
    assert api.store.customers.get("G-2")["facts"] == {"new_customer": True, "blacklisted": False}
    bad = head + "H-1,EUR,100,True,yes\nH-2,EUR,100,1,0\nH-3,EUR,100, true,N\n"
    r = api.client.post(
        "/v1/customer-imports", headers=api.h(**{"Content-Type": "text/csv"}), content=bad.encode()
    )
    b = problem(r, 422, "invalid_request")
    assert {(e["line"], e["column"]) for e in b["errors"]} == {
        (line, col)
        for line in (2, 3, 4)
        for col in ("customer.new_customer", "customer.blacklisted")
    }
    assert all("expected true or false" in e["message"] for e in b["errors"])
    assert api.store.customers.get("H-1") is None


def test_http_csv_import_ledger_columns_name_the_column_to_use(api):
    text = "customer_id,currency,credit_limit,customer.credit_limit,customer.exposure\n"
    r = api.client.post(
        "/v1/customer-imports", headers=api.h(**{"Content-Type": "text/csv"}), content=text.encode()
    )
    b = problem(r, 422, "invalid_request")
    msgs = {e["column"]: e["message"] for e in b["errors"]}
    assert "use the column 'credit_limit'" in msgs["customer.credit_limit"]
    assert "use the column 'open_receivables'" in msgs["customer.exposure"]


def test_put_customer_keeps_receivables_days_and_facts_left_out(store, compiled):
    customer(store, receivables="0.00", blacklisted=True)
    store.ledger.apply_event("C1", event("I1", "invoice_issued", "9500.00", "R-1"), "erp")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET days_past_due = 45 WHERE customer_id = 'C1'"))
    # a limit update: receivables (moved by the invoice event), days and facts stay
    c = store.customers.put("C1", currency="EUR", credit_limit=D("10000.00"))
    assert (c["credit_limit"], c["open_receivables"], c["exposure"]) == (
        D("10000.00"),
        D("9500.00"),
        D("9500.00"),
    )
    assert c["days_past_due"] == 45 and c["facts"]["blacklisted"] is True
    # given explicitly: set (reconciliation with the AR ledger); facts replaced as a whole
    c = store.customers.put(
        "C1",
        currency="EUR",
        credit_limit=D("10000.00"),
        open_receivables=D("100.00"),
        days_past_due=0,
        facts={"risk_class": "low"},
    )
    assert (c["open_receivables"], c["days_past_due"], c["facts"]) == (
        D("100.00"),
        0,
        {"risk_class": "low"},
    )
    # a new customer starts at zero
    n = store.customers.put("C9", currency="EUR", credit_limit=D("5.00"))
    assert (n["open_receivables"], n["days_past_due"], n["facts"]) == (D("0.00"), 0, {})


def test_http_import_without_receivables_never_erases_them_and_no_approve_follows(api):
    # The adversarial case: receivables recorded by an invoice event, then a CSV that only
    # updates limits. Before, the missing column meant 0: exposure vanished and a 9,000.00
    # order was approved against a 10,000.00 limit with 9,500.00 outstanding.
    api.customer("RCV", credit_limit="10000.00", open_receivables="0.00")
    r = api.event(
        "RCV",
        event_id="rcv1",
        type="invoice_issued",
        order_id="R-1",
        amount="9500.00",
        currency="EUR",
    )
    assert r.status_code == 200, r.text
    csv_text = "customer_id,currency,credit_limit,customer.risk_class\nRCV,EUR,10000.00,low\n"
    r = api.client.post(
        "/v1/customer-imports",
        headers=api.h(**{"Content-Type": "text/csv"}),
        content=csv_text.encode(),
    )
    assert r.status_code == 200, r.text
    c = api.client.get("/v1/customers/RCV", headers=api.h()).json()
    assert (c["open_receivables"], c["exposure"]) == ("9500.00", "9500.00")
    assert c["facts"]["years_in_business"] == "12"  # kept: the column was not in the file
    d = api.decide(order_id="R-2", customer_id="RCV", amount="9000.00").json()
    assert d["outcome"] != "approve" and d["exposure_after"] == "18500.00"


def test_http_import_empty_cells_keep_stored_values_and_facts(api):
    api.customer("BL", credit_limit="50000.00", open_receivables="700.00")
    r = api.client.patch(
        "/v1/customers/BL", headers=api.h(), json={"facts": {**PRIME, "blacklisted": True}}
    )
    assert r.status_code == 200, r.text
    csv_text = (
        "customer_id,currency,credit_limit,open_receivables,days_past_due,customer.blacklisted\n"
        "BL,EUR,60000.00,,,\n"
        "NEW,EUR,100.00,,,\n"
    )
    r = api.client.post(
        "/v1/customer-imports",
        headers=api.h(**{"Content-Type": "text/csv"}),
        content=csv_text.encode(),
    )
    assert r.status_code == 200, r.text
    c = api.client.get("/v1/customers/BL", headers=api.h()).json()
    assert (c["credit_limit"], c["open_receivables"]) == ("60000.00", "700.00")
    assert c["facts"]["blacklisted"] is True  # an empty cell never clears a blacklist
    n = api.client.get("/v1/customers/NEW", headers=api.h()).json()
    assert (n["open_receivables"], n["days_past_due"], n["facts"]) == ("0.00", 0, {})
    assert api.decide(order_id="BL-1", customer_id="BL", amount="10.00").json()["outcome"] == (
        "decline"
    )


def test_concurrent_creation_of_one_customer_and_crossed_imports_never_fail(store):
    import threading

    results: list[str] = []

    def put(i: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            store.customers.put("NEWC", currency="EUR", credit_limit=D(f"{i + 1}000.00"))
            results.append("ok")
        except Exception as e:  # noqa: BLE001 - the test reports what failed
            results.append(type(e).__name__)

    for _ in range(5):
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=put, args=(i, barrier)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM customers WHERE customer_id = 'NEWC'"))
    assert results == ["ok"] * 20

    rows = [
        {
            "line": i + 2,
            "customer_id": f"K{i:03d}",
            "currency": "EUR",
            "credit_limit": D("100.00"),
            "open_receivables": None,
            "days_past_due": None,
            "facts": {},
        }
        for i in range(60)
    ]
    outcomes: list[str] = []

    def imp(batch: list[dict[str, Any]], barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            store.customers.import_rows(batch)
            outcomes.append("ok")
        except Exception as e:  # noqa: BLE001
            outcomes.append(type(e).__name__)

    for _ in range(3):
        barrier = threading.Barrier(4)
        batches = [rows, list(reversed(rows)), rows, list(reversed(rows))]
        threads = [threading.Thread(target=imp, args=(b, barrier)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert outcomes == ["ok"] * 12
