"""Deciding over HTTP: approve, refer, decline, exact money, request facts, repeats and
amendments, conflicts, invalid requests (on a SQLite file; tests/helpers/sqlite_api.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import PRIME, VALID, Api, problem

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api


def test_approve_over_http_with_exact_money(api: Api) -> None:
    api.customer()
    r = api.decide()
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["outcome"] == "approve" and d["kind"] == "new"
    assert d["order_amount"] == "12500.00"
    assert d["credit_limit"] == "100000.00"
    assert d["exposure_after"] == "32500.00"
    assert d["available_credit"] == "67500.00"
    assert d["deposit_amount"] == "0.00"
    assert d["order_id"] == "SO-1" and d["customer_id"] == "CUST-1"
    assert d["policy"]["id"] == "trade-credit"
    # the approval reserves the amount on the customer's ledger
    c = api.client.get("/v1/customers/CUST-1", headers=api.h("order_entry")).json()
    assert c["open_orders"] == "12500.00"
    assert c["exposure"] == "32500.00"
    assert c["available_credit"] == "67500.00"


def test_refer_over_limit_with_deposit(api: Api) -> None:
    api.customer("CUST-4", credit_limit="50000.00", open_receivables="45000.00")
    r = api.decide(order_id="SO-4", customer_id="CUST-4", amount="10000.00", payment_term_days=30)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["outcome"] == "refer"
    assert d["deposit_amount"] == "5000.00"
    assert d["exposure_after"] == "55000.00"
    assert d["available_credit"] == "-5000.00"
    assert "REF_OVER_LIMIT" in [x["code"] for x in d["reasons"]]
    assert d["escalation"]["level"] == "credit_analyst"
    # a referral reserves nothing
    c = api.client.get("/v1/customers/CUST-4", headers=api.h()).json()
    assert c["open_orders"] == "0.00"


def test_decline_blacklisted(api: Api) -> None:
    api.customer("CUST-9", facts={**PRIME, "blacklisted": True})
    r = api.decide(order_id="SO-9", customer_id="CUST-9", amount="100.00")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["outcome"] == "decline"
    assert "KO_BLACKLISTED" in [x["code"] for x in d["reasons"]]


def test_request_facts_win_over_the_ledger(api: Api) -> None:
    api.customer()
    r = api.decide(facts={"customer.blacklisted": True})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "decline"
    assert r.json()["trail"]["inputs"]["customer.blacklisted"] is True


def test_idempotent_repeat_and_amendment(api: Api) -> None:
    api.customer()
    first = api.decide().json()
    again = api.decide()
    assert again.status_code == 200
    assert again.json()["kind"] == "repeat"
    assert again.json()["decision_id"] == first["decision_id"]
    assert again.json()["outcome"] == "approve"
    # same amount written differently is the same order
    assert api.decide(amount="12500").json()["kind"] == "repeat"
    c = api.client.get("/v1/customers/CUST-1", headers=api.h()).json()
    assert c["open_orders"] == "12500.00"  # reserved once
    amended = api.decide(amount="2000.00").json()
    assert amended["kind"] == "amended"
    assert amended["decision_id"] != first["decision_id"]
    assert amended["exposure_after"] == "22000.00"  # previous reservation released first
    c = api.client.get("/v1/customers/CUST-1", headers=api.h()).json()
    assert c["open_orders"] == "2000.00"


def test_unknown_customer_is_404(api: Api) -> None:
    body = problem(api.decide(customer_id="NOBODY"), 404, "unknown_customer")
    assert "NOBODY" in body["detail"]
    problem(api.client.get("/v1/customers/NOBODY", headers=api.h()), 404, "unknown_customer")


def test_order_moving_to_another_customer_is_409(api: Api) -> None:
    api.customer()
    api.customer("CUST-2")
    assert api.decide().status_code == 200
    body = problem(api.decide(customer_id="CUST-2"), 409, "conflict")
    assert body["errors"][0]["path"] == "order_id"


@pytest.mark.parametrize(
    ("raw", "path", "code"),
    [
        pytest.param(b'{"order_id": "SO-1", "amount": ', "", "invalid_json", id="malformed"),
        pytest.param(b"", "", "invalid_json", id="empty"),
        pytest.param(b"[1, 2]", "", "invalid_type", id="not-an-object"),
        pytest.param(VALID + b', "amount": "1.00"}', "", "invalid_json", id="duplicate-key"),
        pytest.param(b'{"amount": NaN}', "", "invalid_json", id="nan"),
        pytest.param(
            VALID.replace(b'"12500.00"', b"12500.5") + b"}",
            "amount",
            "inexact_number",
            id="float-money",
        ),
        pytest.param(
            VALID.replace(b'"12500.00"', b"1.25e4") + b"}",
            "amount",
            "inexact_number",
            id="exponent-money",
        ),
        pytest.param(
            VALID.replace(b'"12500.00"', b'"1e400"') + b"}",
            "amount",
            "invalid_type",
            id="exponent-string",
        ),
        pytest.param(
            VALID.replace(b'"12500.00"', b"1" + b"0" * 40) + b"}",
            "amount",
            "out_of_range",
            id="huge-integer",
        ),
        pytest.param(
            VALID.replace(b'"12500.00"', b'"1000000000000000.00"') + b"}",
            "amount",
            "out_of_range",
            id="huge-string",
        ),
        pytest.param(
            VALID.replace(b'"12500.00"', b'"-5.00"') + b"}",
            "amount",
            "below_min",
            id="negative-amount",
        ),
        pytest.param(
            VALID.replace(b'"12500.00"', b'"0.00"') + b"}", "amount", "below_min", id="zero-amount"
        ),
        pytest.param(
            VALID.replace(b'"12500.00"', b'"1.005"') + b"}",
            "amount",
            "too_many_decimals",
            id="three-decimals",
        ),
        pytest.param(
            VALID.replace(b'"12500.00"', b"true") + b"}", "amount", "invalid_type", id="bool-money"
        ),
        pytest.param(
            VALID.replace(b'"EUR"', b'"XYZ"') + b"}",
            "currency",
            "unknown_currency",
            id="unknown-currency",
        ),
        pytest.param(
            VALID.replace(b'"EUR"', b'"USD"') + b"}",
            "currency",
            "currency_mismatch",
            id="other-currency",
        ),
        pytest.param(VALID + b', "colour": "red"}', "colour", "unknown_field", id="unknown-field"),
        pytest.param(
            VALID.replace(b', "payment_term_days": 60', b"") + b"}",
            "payment_term_days",
            "missing",
            id="missing-field",
        ),
        pytest.param(
            VALID.replace(b"60", b'"60"') + b"}",
            "payment_term_days",
            "invalid_type",
            id="term-as-text",
        ),
        pytest.param(
            VALID.replace(b"60", b"60.5") + b"}",
            "payment_term_days",
            "invalid_type",
            id="term-with-fraction",
        ),
        pytest.param(
            VALID.replace(b"60", b"400") + b"}",
            "payment_term_days",
            "above_max",
            id="term-above-policy-max",
        ),
        pytest.param(
            VALID + b', "facts": {"customer.risk_clas": "low"}}',
            "facts.customer.risk_clas",
            "unknown_field",
            id="unknown-fact",
        ),
        pytest.param(
            VALID + b', "facts": {"customer.country_risk": "excellent"}}',
            "facts.customer.country_risk",
            "invalid_value",
            id="bad-enum-fact",
        ),
        pytest.param(
            VALID + b', "facts": {"customer.overdue_amount": 10.5}}',
            "facts.customer.overdue_amount",
            "inexact_number",
            id="float-money-fact",
        ),
        pytest.param(
            VALID + b', "facts": {"risk_class": "low"}}',
            "facts",
            "invalid_value",
            id="fact-without-group",
        ),
        pytest.param(
            VALID + b', "facts": {"order.amount": "1.00"}}',
            "facts",
            "invalid_value",
            id="reserved-fact",
        ),
        pytest.param(
            VALID.replace(b'"SO-1"', b'""') + b"}", "order_id", "invalid_value", id="empty-order-id"
        ),
    ],
)
def test_invalid_requests_are_422_with_the_path(api: Api, raw: bytes, path: str, code: str) -> None:
    api.customer()
    body = problem(api.decide(raw=raw), 422)
    assert body["code"] in ("invalid_request", "invalid_json")
    assert any(e["path"] == path and e["code"] == code for e in body["errors"]), body
    for e in body["errors"]:
        assert set(e) == {"path", "code", "message"} and e["message"]
    # nothing was decided or reserved
    rows, _ = api.store.decisions.search()
    assert rows == []
    assert api.store.customers.get("CUST-1")["open_orders"] == Decimal("0.00")


def test_every_problem_is_reported_at_once(api: Api) -> None:
    raw = b'{"order_id": "SO-1", "customer_id": 5, "amount": 1.5, "currency": "EUR", "x": 1}'
    body = problem(api.decide(raw=raw), 422, "invalid_request")
    paths = {e["path"] for e in body["errors"]}
    assert paths == {"customer_id", "amount", "payment_term_days", "x"}


@pytest.mark.parametrize("holder", ["this process", "another process"])
def test_a_writer_holding_the_database_does_not_stop_the_service(api: Api, holder: str) -> None:
    """On SQLite the decisions are decided on the event loop. While another writer holds the
    database (this process's writer lock, as a long CSV import does; or another process's
    write transaction), a decision waits for it on a thread: the loop goes on answering
    (liveness, reads), and the decision is recorded once the other writer is done."""
    import sqlite3
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    api.customer()
    if holder == "this process":
        lock = api.store.db._writer_lock
        take, give = (lambda: lock.acquire(timeout=5)), lock.release
    else:
        other = sqlite3.connect(api.db, isolation_level=None, check_same_thread=False)
        take = lambda: other.execute("BEGIN IMMEDIATE") is not None  # noqa: E731
        give = lambda: other.execute("ROLLBACK") and None  # noqa: E731
    writer = api.app.state.service.writer
    released = threading.Event()
    with TestClient(api.app) as client, ThreadPoolExecutor(1) as pool:
        assert take()
        # the safety net: a loop that waits for the lock would answer nothing until then
        timer = threading.Timer(10, lambda: (released.set(), give()))
        timer.start()
        try:
            pending = pool.submit(
                client.post,
                "/v1/decisions",
                headers={**api.h("order_entry"), "Content-Type": "application/json"},
                content=VALID + b"}",
            )
            deadline = time.monotonic() + 10
            while writer._pending == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert writer._pending == 1  # the decision waits for its write turn
            health = client.get("/healthz")
            read = client.get("/v1/customers/CUST-1", headers=api.h("order_entry"))
            answered_while_held = not released.is_set()
        finally:
            timer.cancel()
            timer.join()  # it ran, or never will
            if not released.is_set():
                released.set()
                give()
        decided = pending.result(timeout=60)
    assert health.status_code == 200 and read.status_code == 200
    assert answered_while_held
    assert decided.status_code == 200, decided.text
    assert decided.json()["outcome"] == "approve"
    assert api.client.get("/v1/customers/CUST-1", headers=api.h("order_entry")).json()[
        "open_orders"
    ] == "12500.00"
