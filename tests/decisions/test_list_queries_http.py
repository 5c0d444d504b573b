"""Query parameters of the decision list and export: calendar edges, every bad parameter
in one 422 (SQLite and PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import pytest

from tests.helpers import ledger
from tests.helpers.ledger import problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url


@pytest.mark.dates
@pytest.mark.parametrize("route", ["/v1/decisions", "/v1/decisions/export"])
def test_query_dates_at_the_calendar_edges(api, route):
    api.customer()
    assert api.decide().status_code == 200

    def count(**params):
        r = api.client.get(route, params=params, headers=api.h("compliance"))
        assert r.status_code == 200, r.text
        if route == "/v1/decisions":
            return len(r.json()["items"])
        return sum(1 for line in r.text.splitlines() if '"decision_id"' in line)

    # once a 500 (OverflowError adding a day to 9999-12-31) and a reset export connection
    assert count(to="9999-12-31") == 1
    assert count(**{"from": "0001-01-01", "to": "9999-12-31"}) == 1
    assert count(to="0001-01-01") == 0
    assert count(**{"from": "9999-12-31"}) == 0
    assert count(to="9999-12-31T23:59:59.999999+00:00") == 1
    assert count(**{"from": "0001-01-01T00:00:00-05:00"}) == 1  # 05:00 UTC on 1 January 1
    assert count(**{"from": "2000-01-01T00:00:00+14:00", "to": "9999-12-31T10:00:00+09:00"}) == 1
    for name, value in (
        ("from", "0001-01-01T00:00:00+05:00"),  # before year 1 in UTC
        ("to", "9999-12-31T23:00:00-05:00"),  # after 9999 in UTC
    ):
        body = problem(
            api.client.get(route, params={name: value}, headers=api.h("compliance")),
            422,
            "invalid_request",
        )
        assert [(e["path"], e["code"]) for e in body["errors"]] == [
            (f"query.{name}", "out_of_range")
        ]


def test_every_bad_list_query_parameter_in_one_422(api):
    r = api.client.get(
        "/v1/decisions",
        params={"limit": 0, "cursor": "abc", "from": "yesterday", "to": "10000-01-01"},
        headers=api.h("reviewer"),
    )
    body = problem(r, 422, "invalid_request")
    assert sorted(e["path"] for e in body["errors"]) == [
        "query.cursor",
        "query.from",
        "query.limit",
        "query.to",
    ]
    r = api.client.get(
        "/v1/decisions/export",
        params={"format": "xml", "from": "yesterday", "to": "9999-12-31T23:00:00-05:00"},
        headers=api.h("compliance"),
    )
    body = problem(r, 422, "invalid_request")
    assert sorted((e["path"], e["code"]) for e in body["errors"]) == [
        ("query.format", "invalid_value"),
        ("query.from", "invalid_value"),
        ("query.to", "out_of_range"),
    ]


def test_a_customer_id_filter_is_as_long_as_a_customer_id_at_most(api):
    """A filter longer than any customer id (200 characters) is refused on the list as on
    the export, not searched for."""
    for path, role in (("/v1/decisions", "reviewer"), ("/v1/decisions/export", "compliance")):
        r = api.client.get(path, params={"customer_id": "C" * 201}, headers=api.h(role))
        body = problem(r, 422, "invalid_request")
        errors = [(e["path"], e["code"]) for e in body["errors"]]
        assert errors == [("query.customer_id", "too_long")]
        ok = api.client.get(path, params={"customer_id": "C" * 200}, headers=api.h(role))
        assert ok.status_code == 200, ok.text
