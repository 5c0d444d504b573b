"""What a caller sent is never echoed back (or logged) at length: problem paths and
messages are bounded (found by the adversarial review of 2026-12-07: an unknown member
named with 900,000 characters came back twice, 1.8 MB). SQLite and PostgreSQL, HTTP."""

from __future__ import annotations

from tests.helpers import ledger
from tests.helpers.ledger import problem

api, db_url, pg_url = ledger.api, ledger.db_url, ledger.pg_url
ORDER = {"order_id": "SO-1", "customer_id": "CUST-1", "amount": "100.00", "currency": "EUR",
         "payment_term_days": 30}
LONG = "y" * 900_000


def _bounded(body, status_path_prefix):
    for e in body["errors"]:
        assert len(e["path"]) <= 200 and len(e["message"]) <= 500, e
        assert e["path"].startswith(status_path_prefix) and e["path"].endswith("..."), e


def test_an_unknown_member_with_a_huge_name_is_cut(api):
    api.customer("CUST-1")
    h = api.h("order_entry")
    r = api.client.post("/v1/decisions", headers=h, json={**ORDER, LONG: 1})
    body = problem(r, 422, "invalid_request")
    assert len(r.content) < 3_000
    _bounded(body, "yyy")
    assert body["errors"][0]["code"] == "unknown_field"
    r = api.client.post("/v1/decisions", headers=h,
                        json={**ORDER, "facts": {"customer." + LONG[:500_000]: 1}})
    body = problem(r, 422, "invalid_request")
    assert len(r.content) < 3_000
    _bounded(body, "facts.customer.yyy")
    r = api.client.patch("/v1/customers/CUST-1", headers=api.h(), json={LONG[:500_000]: 1})
    problem(r, 422)
    assert len(r.content) < 3_000


def test_a_huge_unknown_path_is_cut_in_the_404(api):
    r = api.client.get("/nokey/" + "z" * 60_000)
    body = problem(r, 404, "not_found")
    assert len(r.content) < 2_000 and body["detail"].endswith("...")


def test_a_trailing_slash_is_a_404_problem_never_a_redirect(api):
    """Found by the new-user run: Starlette redirected ``/v1/policy/`` with a 307 to an
    absolute http:// URL, before any key check."""
    for path in ("/v1/policy/", "/healthz/", "/v1/decisions/", "/v1/customers/C1/"):
        r = api.client.get(path, headers=api.h(), follow_redirects=False)
        problem(r, 404, "not_found")
        assert "location" not in r.headers
