"""order_entry reads the decisions of its business unit (``GET /v1/decisions/{id}`` and the
list), masked exactly as a reviewer reads them; not the export nor replay (SQLite and
PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

from tests.core.test_contract import _sensitive_policy
from tests.helpers import ledger
from tests.helpers.ledger import Api, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url


def decided(api: Api, order_id: str, amount: str, outcome: str) -> str:
    r = api.decide(order_id=order_id, amount=amount)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == outcome, r.json()["reasons"]
    return r.json()["decision_id"]


def test_order_entry_reads_decisions(api):
    """order_entry reads the decisions of its unit (the one unit this service works in),
    not the export nor replay."""
    api.customer()
    decision_id = decided(api, "SO-1", "100.00", "approve")
    r = api.client.get(f"/v1/decisions/{decision_id}", headers=api.h("order_entry"))
    assert r.status_code == 200 and r.json()["decision_id"] == decision_id
    r = api.client.get("/v1/decisions?order_id=SO-1", headers=api.h("order_entry"))
    assert [i["decision_id"] for i in r.json()["items"]] == [decision_id]
    problem(api.client.get("/v1/decisions/export", headers=api.h("order_entry")), 403)
    replay = f"/v1/decisions/{decision_id}/replay"
    problem(api.client.get(replay, headers=api.h("order_entry")), 403)


def test_order_entry_reads_decisions_masked_like_a_reviewer(db_url, tmp_path):
    a = Api(db_url, policy=_sensitive_policy(tmp_path))
    try:
        a.customer()
        decision_id = decided(a, "SO-M", "100.00", "approve")
        record = f"/v1/decisions/{decision_id}"
        as_erp = a.client.get(record, headers=a.h("order_entry")).json()
        assert as_erp == a.client.get(record, headers=a.h("reviewer")).json()
        assert as_erp["decision"]["order_amount"] == "***"
        page = "/v1/decisions?order_id=SO-M"
        as_erp = a.client.get(page, headers=a.h("order_entry")).json()
        assert as_erp == a.client.get(page, headers=a.h("reviewer")).json()
        assert as_erp["items"][0]["request"]["order"]["amount"] == "***"
    finally:
        a.store.dispose()
