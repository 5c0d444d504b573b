"""405 answers list every method the path accepts (``Allow``), and the customer import's
paths: ``POST /v1/customer-imports``, its deprecated alias ``POST /v1/customers/import``,
which is never a customer id (on a SQLite file; tests/helpers/sqlite_api.py)."""

from __future__ import annotations

import pytest

from api.app import ROUTES
from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import Api, problem

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api

OPS = {"/healthz": "GET, HEAD", "/readyz": "GET, HEAD", "/metrics": "GET, HEAD"}
ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _declared() -> dict[str, str]:
    """path (with sample parameter values) -> the Allow header ROUTES implies."""
    out: dict[str, set[str]] = {}
    for method, path, _ in ROUTES:
        concrete = path.replace("{decision_id}", "D-1").replace("{customer_id}", "CUST-1")
        out.setdefault(concrete, set()).add(method)
    return {p: ", ".join(m for m in ORDER if m in ms) for p, ms in out.items()}


def test_405_lists_every_method_of_the_path(api: Api) -> None:
    expected = {**_declared(), **OPS}
    assert expected["/v1/decisions"] == "GET, POST"
    assert expected["/v1/customers/CUST-1"] == "GET, PUT, PATCH"
    for path, allow in expected.items():
        for method in ("PATCH", "DELETE", "OPTIONS"):
            if method in allow.split(", "):
                continue  # PATCH /v1/customers/{id} is a route
            r = api.client.request(method, path, headers=api.h())
            body = problem(r, 405, "method_not_allowed")
            assert r.headers["allow"] == allow, (method, path)
            assert allow in body["detail"], body
    # HEAD on a keyed route is not allowed (GET only); the ops routes take it
    r = api.client.head("/v1/decisions", headers=api.h())
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert api.client.head("/healthz").status_code == 200
    # no key needed to learn the methods: routing answers before the key is checked
    r = api.client.delete("/v1/decisions")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    # the docs' files: GET and HEAD
    r = api.client.post("/docs-assets/favicon.png")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_import_is_not_a_customer_id(api: Api) -> None:
    api.customer()
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        for headers in (api.h(), {}):  # with or without a key: never a customer
            r = api.client.request(
                method,
                "/v1/customers/import",
                headers=headers,
                json={"currency": "EUR", "credit_limit": "100.00"},
            )
            body = problem(r, 405, "method_not_allowed")
            assert r.headers["allow"] == "POST", (method, r.headers)
            assert "customer" in body["detail"] or "POST" in body["detail"]
    assert api.store.customers.get("import") is None
    # percent-encoded, it is the same path
    assert api.client.get("/v1/customers/imp%6Frt", headers=api.h()).status_code == 405
    # another spelling is another id (ids are case-sensitive): an ordinary unknown customer
    problem(api.client.get("/v1/customers/Import", headers=api.h()), 404, "unknown_customer")


def test_import_is_refused_as_a_customer_id_in_the_csv(api: Api) -> None:
    csv = "customer_id,currency,credit_limit\nimport,EUR,100.00\nOK-1,EUR,100.00\n"
    r = api.client.post(
        "/v1/customer-imports",
        headers={**api.h(), "Content-Type": "text/csv"},
        content=csv.encode(),
    )
    body = problem(r, 422, "invalid_request")
    [error] = body["errors"]
    assert (error["line"], error["column"], error["code"]) == (2, "customer_id", "invalid_row")
    assert "reserved" in error["message"], error
    assert api.store.customers.get("OK-1") is None  # all or nothing


def test_reserved_customer_id_check() -> None:
    """The PUT path's check (GET and PUT on /v1/customers/import never reach it: 405)."""
    from pydantic_core import PydanticCustomError

    from api.customers.models import reserved_customer_id

    assert reserved_customer_id("imports") == "imports"
    with pytest.raises(PydanticCustomError) as e:
        reserved_customer_id("import")
    assert e.value.type == "invalid_value"
    assert "reserved" in e.value.message()


def test_deprecated_import_path_still_imports(api: Api) -> None:
    csv = "customer_id,currency,credit_limit\nALIAS-1,EUR,2500.00\n"
    r = api.client.post(
        "/v1/customers/import",
        headers={**api.h(), "Content-Type": "text/csv"},
        content=csv.encode(),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"imported": 1}
    assert api.store.customers.get("ALIAS-1")["credit_limit"] == 2500
    spec = api.client.get("/openapi.json").json()["paths"]
    assert spec["/v1/customers/import"]["post"]["deprecated"] is True
    assert set(spec["/v1/customers/import"]) == {"post"}
    assert "deprecated" not in spec["/v1/customer-imports"]["post"]
