"""Requests in general: size limit, unknown routes, media types, explicit nulls, ISO dates,
request ids, JSON logs (on a SQLite file; tests/helpers/sqlite_api.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from api.app import JsonFormatter
from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import VALID, Api, make_api, problem

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api


def test_request_too_large_is_413_before_parsing(tmp_path: Path) -> None:
    api = make_api(tmp_path, max_request_bytes=2048)
    try:
        api.customer()
        big = VALID + b', "facts": {"customer.risk_class": "' + b"x" * 4000 + b'"}}'
        problem(api.decide(raw=big), 413, "request_too_large")
        # no Content-Length (chunked): counted while reading
        r = api.client.post(
            "/v1/decisions",
            headers={**api.h("order_entry"), "Content-Type": "application/json"},
            content=iter([big[:1500], big[1500:]]),
        )
        problem(r, 413, "request_too_large")
        # invalid JSON that is too large is still a 413 (size is checked first)
        problem(api.decide(raw=b"{" * 5000), 413, "request_too_large")
        assert api.decide().status_code == 200
    finally:
        api.store.dispose()


def test_unknown_route_is_a_problem(api: Api) -> None:
    problem(api.client.get("/v1/nothing"), 404, "not_found")
    problem(api.client.delete("/v1/decisions", headers=api.h()), 405, "method_not_allowed")


def test_json_logs_carry_the_decision_id(api: Api) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("creditgate.api")
    logger.addHandler(handler)
    try:
        api.customer()
        d = api.decide().json()
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    decision = [x for x in lines if x["msg"] == "decision"]
    assert decision and decision[0]["decision_id"] == d["decision_id"]
    assert decision[0]["outcome"] == "approve" and decision[0]["order_id"] == "SO-1"
    request = [x for x in lines if x["msg"] == "request" and x["path"] == "/v1/decisions"]
    assert request[0]["decision_id"] == d["decision_id"] and request[0]["status"] == 200
    assert request[0]["request_id"]


def test_request_id_is_echoed(api: Api) -> None:
    r = api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert api.client.get("/healthz").headers["x-request-id"]


def test_unsupported_media_type_title(api: Api) -> None:
    body = problem(
        api.client.post("/v1/customer-imports", headers=api.h(), json={"a": 1}),
        415,
        "unsupported_media_type",
    )
    assert "JSON" not in body["title"]
    assert "text/csv" in body["detail"]


@pytest.mark.parametrize(
    "value, code",
    [
        (None, "null_value"),
        (0, "invalid_type"),
        (1764374400, "invalid_type"),
        ("20261129", "invalid_value"),
        ("2026-11-29T00:00:00", "invalid_value"),
        ("2026-11-29 ", "invalid_value"),
        ("2026-02-30", "invalid_value"),
        ("29.11.2026", "invalid_value"),
        (True, "invalid_type"),
    ],
)
@pytest.mark.dates
def test_order_date_and_rate_dates_are_iso_strings_only(api: Api, value: Any, code: str) -> None:
    api.customer()
    body = problem(api.decide(order_date=value), 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("order_date", code)], body
    message = body["errors"][0]["message"]
    assert "Datetime" not in message and "pydantic" not in message
    assert ("YYYY-MM-DD" in message) or ("calendar date" in message) or ("null" in message)
    assert api.store.decisions.search()[0] == []
    rates = {"base": "EUR", "rates": [{"currency": "USD", "rate": "0.92", "as_of": value}]}
    body = problem(api.client.put("/v1/fx-rates", headers=api.h(), json=rates), 422)
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("rates[0].as_of", code)], body


@pytest.mark.dates
def test_explicit_null_is_null_value_in_every_body(api: Api) -> None:
    api.customer()
    body = problem(api.decide(facts=None, amount=None), 422, "invalid_request")
    assert {(e["path"], e["code"]) for e in body["errors"]} == {
        ("facts", "null_value"),
        ("amount", "null_value"),
    }
    r = api.client.post(
        "/v1/customers/CUST-1/events",
        headers=api.h("order_entry"),
        json={
            "event_id": "E1",
            "type": "payment_received",
            "amount": "1.00",
            "order_id": None,
            "currency": "EUR",
        },
    )
    body = problem(r, 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("order_id", "null_value")]
    r = api.client.put(
        "/v1/customers/CUST-2",
        headers=api.h(),
        json={"currency": "EUR", "credit_limit": "1.00", "days_past_due": None},
    )
    body = problem(r, 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("days_past_due", "null_value")]
    # a valid ISO date is still accepted
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    assert api.decide(order_date=today).status_code == 200


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/merge-patch+json",
        "multipart/form-data",
    ],
)
@pytest.mark.dates
def test_json_bodies_need_application_json(api: Api, ctype: str | None) -> None:
    api.customer()
    headers = {"Content-Type": ctype} if ctype else {}
    customer = {"currency": "EUR", "credit_limit": "1.00"}
    order = json.loads(VALID + b"}")
    rates = {"base": "EUR", "rates": [{"currency": "USD", "rate": "0.92", "as_of": "2026-11-29"}]}
    event = {"event_id": "E1", "type": "payment_received", "amount": "1.00", "currency": "EUR"}
    for method, url, role, payload in (
        ("POST", "/v1/decisions", "order_entry", order),
        ("PUT", "/v1/customers/CUST-2", "admin", customer),
        ("POST", "/v1/customers/CUST-1/events", "order_entry", event),
        ("PUT", "/v1/fx-rates", "admin", rates),
    ):
        r = api.client.request(
            method, url, headers={**api.h(role), **headers}, content=json.dumps(payload).encode()
        )
        body = problem(r, 415, "unsupported_media_type")
        assert "application/json" in body["detail"], body
    assert api.store.decisions.search()[0] == []
    assert api.store.customers.get("CUST-2") is None


@pytest.mark.parametrize(
    "ctype",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"],
)
def test_application_json_with_utf8_charset_is_accepted(api: Api, ctype: str) -> None:
    api.customer()
    raw = VALID + b"}"
    r = api.client.post(
        "/v1/decisions", headers={**api.h("order_entry"), "Content-Type": ctype}, content=raw
    )
    assert r.status_code == 200, r.text
