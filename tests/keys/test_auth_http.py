"""API keys over HTTP: every route needs a key of one of its roles, revoked and unknown keys,
the two auth headers (on a SQLite file; tests/helpers/sqlite_api.py)."""

from __future__ import annotations

import pytest

from api.app import ROUTES
from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import Api, problem, sql

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api


ROUTE_IDS = [f"{m} {p}" for m, p, _ in ROUTES]


def _url(path: str) -> str:
    return (
        path.replace("{decision_id}", "d-1")
        .replace("{customer_id}", "CUST-1")
        .replace("{order_id}", "SO/2026/1")
    )


@pytest.mark.parametrize(("method", "path", "roles"), ROUTES, ids=ROUTE_IDS)
def test_every_route_needs_a_key(api: Api, method: str, path: str, roles: tuple) -> None:
    r = api.client.request(method, _url(path))
    body = problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization" in body["detail"]
    r = api.client.request(method, _url(path), headers={"Authorization": "Bearer cg_nope"})
    problem(r, 401, "unauthorized")
    r = api.client.request(method, _url(path), headers={"X-API-Key": "cg_nope"})
    problem(r, 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "roles"), ROUTES, ids=ROUTE_IDS)
def test_every_route_refuses_other_roles(api: Api, method: str, path: str, roles: tuple) -> None:
    wrong = [r for r in api.keys if r not in roles and r != "admin"]
    assert wrong
    for role in wrong:
        r = api.client.request(method, _url(path), headers=api.h(role))
        body = problem(r, 403, "forbidden")
        assert role in body["detail"]
    for role in [*roles, "admin"]:
        if role not in api.keys:
            continue
        # X-API-Key works as well as Authorization: Bearer
        r = api.client.request(method, _url(path), headers={"X-API-Key": api.keys[role]})
        assert r.status_code not in (401, 403), (role, r.text)


def test_revoked_key_is_401(api: Api) -> None:
    sql(api.db, "UPDATE api_keys SET revoked = 1 WHERE role = 'reviewer'")
    problem(api.client.get("/v1/decisions", headers=api.h("reviewer")), 401, "unauthorized")


def test_unknown_key_title_differs_from_a_missing_key(api: Api) -> None:
    missing = problem(api.client.get("/v1/policy"), 401, "unauthorized")
    assert missing["title"] == "An API key is required"
    for headers in ({"Authorization": "Bearer cg_nope"}, {"X-API-Key": "x" * 500}):
        unknown = problem(api.client.get("/v1/policy", headers=headers), 401, "unauthorized")
        assert unknown["title"] == "The API key is not valid"
    sql(api.db, "UPDATE api_keys SET revoked = 1 WHERE role = 'reviewer'")
    revoked = problem(api.client.get("/v1/decisions", headers=api.h("reviewer")), 401)
    assert revoked["title"] == "The API key is not valid"
    assert "revoked" in revoked["detail"]


def test_different_keys_in_the_two_headers_are_refused(api: Api) -> None:
    api.customer()
    valid, other = api.keys["order_entry"], api.keys["reviewer"]
    for headers in (
        {"Authorization": f"Bearer {valid}", "X-API-Key": "junk"},
        {"Authorization": "Bearer junk", "X-API-Key": valid},
        {"Authorization": f"Bearer {valid}", "X-API-Key": other},
    ):
        r = api.client.get("/v1/customers/CUST-1", headers=headers)
        body = problem(r, 401, "unauthorized")
        assert "different keys" in body["detail"], body
        assert r.headers["www-authenticate"].startswith("Bearer")
    # the same key in both, or one header alone, is fine
    for headers in (
        {"Authorization": f"Bearer {valid}", "X-API-Key": valid},
        {"X-API-Key": valid},
        {"Authorization": f"Bearer {valid}"},
    ):
        assert api.client.get("/v1/customers/CUST-1", headers=headers).status_code == 200


def test_two_different_keys_in_one_header_kind_are_401(api: Api) -> None:
    api.customer()
    valid, other = api.keys["admin"], api.keys["order_entry"]
    for name, a, b in (
        ("X-API-Key", valid, "junk"),
        ("X-API-Key", "junk", valid),
        ("X-API-Key", valid, other),
        ("Authorization", f"Bearer {valid}", "Bearer junk"),
        ("Authorization", "Bearer junk", f"Bearer {valid}"),
        ("Authorization", f"Bearer {valid}", "Basic eDp5"),
    ):
        r = api.client.get("/v1/customers/CUST-1", headers=[(name, a), (name, b)])
        body = problem(r, 401, "unauthorized")
        assert f"2 '{name}' headers with different values" in body["detail"], body
        assert r.headers["www-authenticate"].startswith("Bearer")
    # the same key twice is one key
    for name, v in (("X-API-Key", valid), ("Authorization", f"Bearer {valid}")):
        r = api.client.get("/v1/customers/CUST-1", headers=[(name, v), (name, v)])
        assert r.status_code == 200, r.text
