"""The customer history: every PUT, PATCH and import change is a hash-chained record (who,
when, old → new, reason) written with the change, read newest first, and verified by the
audit (an edited or deleted record is reported). Over HTTP on SQLite and PostgreSQL
(tests/helpers/ledger.py)."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from tests.helpers import ledger
from tests.helpers.ledger import problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url

AT = "2026-11-29T12:00:00.000000+00:00"  # ledger.NOW, the service clock
BODY = {
    "currency": "EUR",
    "credit_limit": "50000.00",
    "facts": {"risk_class": "low", "blacklisted": True},
    "reason": "onboarding",
}


def _history(api, cid="C1", role="compliance", **params):
    r = api.client.get(f"/v1/customers/{cid}/history", headers=api.h(role), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _changes(api, db_url):
    """Create C1 (PUT), raise its limit and lift its blacklist (PATCH), import a new limit."""
    r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-None-Match": "*"}), json=BODY)
    assert r.status_code == 200, r.text
    r = api.client.patch("/v1/customers/C1", headers=api.h(),
                         json={"credit_limit": "60000.00", "reason": "credit review Q4"})
    assert r.status_code == 200, r.text
    r = api.client.patch("/v1/customers/C1", headers=api.h(),
                         json={"facts": {"blacklisted": False}})
    assert r.status_code == 200, r.text
    csv_text = b"customer_id,currency,credit_limit,days_past_due\nC1,EUR,70000.00,4\n"
    r = api.client.post("/v1/customer-imports", headers=api.h(**{"Content-Type": "text/csv"}),
                        content=csv_text)
    assert r.status_code == 200, r.text
    return hashlib.sha256(csv_text).hexdigest()[:16]


def test_history_shows_who_when_old_new_and_reason_newest_first(api, db_url):
    digest = _changes(api, db_url)
    # a change that changes nothing records nothing
    r = api.client.patch("/v1/customers/C1", headers=api.h(),
                         json={"credit_limit": "70000.00", "reason": "no-op"})
    assert r.status_code == 200, r.text
    page = _history(api)
    assert page["next_cursor"] is None
    items = page["items"]
    assert [(i["seq"], i["source"], i["version"], i["reason"]) for i in items] == [
        (4, "import", 4, f"import sha256:{digest}"),
        (3, "patch", 3, None),
        (2, "patch", 2, "credit review Q4"),
        (1, "put", 1, "onboarding"),
    ]
    key_id = hashlib.sha256(api.keys["admin"].encode()).hexdigest()[:12]
    for i in items:
        assert i["who"] == {"key_id": key_id, "role": "admin", "name": ""}
        assert i["at"] == AT and i["customer_id"] == "C1" and len(i["record_hash"]) == 64
    assert items[0]["changes"] == {
        "credit_limit": {"old": "60000.00", "new": "70000.00"},
        "days_past_due": {"old": 0, "new": 4},
    }
    assert items[1]["changes"] == {"facts.blacklisted": {"old": True, "new": False}}
    assert items[2]["changes"] == {"credit_limit": {"old": "50000.00", "new": "60000.00"}}
    assert items[3]["changes"] == {
        "currency": {"old": None, "new": "EUR"},
        "credit_limit": {"old": None, "new": "50000.00"},
        "open_receivables": {"old": None, "new": "0.00"},
        "days_past_due": {"old": None, "new": 0},
        "facts.blacklisted": {"old": None, "new": True},
        "facts.risk_class": {"old": None, "new": "low"},
    }
    # cursor pagination, newest first; reviewers may read it, order entry may not
    first = _history(api, role="reviewer", limit=3)
    assert [i["seq"] for i in first["items"]] == [4, 3, 2] and first["next_cursor"] == 2
    rest = _history(api, limit=3, cursor=first["next_cursor"])
    assert [i["seq"] for i in rest["items"]] == [1] and rest["next_cursor"] is None
    problem(api.client.get("/v1/customers/C1/history", headers=api.h("order_entry")), 403)
    problem(api.client.get("/v1/customers/NOBODY/history", headers=api.h("compliance")),
            404, "unknown_customer")
    b = problem(api.client.patch("/v1/customers/C1", headers=api.h(), json={"reason": ""}), 422)
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("reason", "too_short")]
    verify = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
    assert verify["ok"] is True
    assert verify["customer_history"] | {"head_hash": None} == {
        "ok": True, "checked": 4, "first_broken_seq": None, "reason": None, "head_seq": 4,
        "head_hash": None, "moved_clock": 4,  # the tests' fixed clock is a moved clock
    }
    assert verify["customer_history"]["head_hash"] == items[0]["record_hash"]


def _sql(db_url, statement):
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_an_edited_history_record_fails_the_audit_naming_it(api, db_url):
    _changes(api, db_url)
    _sql(db_url, "UPDATE customer_history SET changes = replace(changes, '60000.00', "
                 "'90000.00') WHERE seq = 2")
    verify = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
    assert verify["ok"] is False
    h = verify["customer_history"]
    assert (h["ok"], h["first_broken_seq"], h["checked"]) == (False, 2, 1)
    assert h["reason"] == "record_hash does not match the record's contents"
    assert verify["ledger"]["ok"] is True and verify["checked"] == 0
    # an edit into text that is no JSON: reported as unreadable, never skipped
    _sql(db_url, "UPDATE customer_history SET changes = 'x' WHERE seq = 3")
    _sql(db_url, "UPDATE customer_history SET changes = '{}' WHERE seq = 2")
    h = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()["customer_history"]
    assert h["first_broken_seq"] == 2  # seq 2's hash still fails first


def test_deleting_the_newest_history_record_is_reported(api, db_url):
    _changes(api, db_url)
    _sql(db_url, "DELETE FROM customer_history WHERE seq = 4")
    h = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()["customer_history"]
    assert (h["ok"], h["first_broken_seq"], h["checked"], h["head_seq"]) == (False, 4, 3, 4)
    assert h["reason"] == "log ends at seq 3 but the head says 4"
    # the next change chains onto the stored head (seq 5): the gap stays visible
    r = api.client.patch("/v1/customers/C1", headers=api.h(), json={"credit_limit": "1.00"})
    assert r.status_code == 200, r.text
    assert [i["seq"] for i in _history(api)["items"]] == [5, 3, 2, 1]
    h = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()["customer_history"]
    assert (h["ok"], h["first_broken_seq"], h["checked"]) == (False, 5, 3)
    assert h["reason"] == "sequence gap: expected seq 4, found 5"


def test_a_change_and_its_history_record_are_written_together(api, db_url, monkeypatch):
    import api.customers.persistence as persistence

    _changes(api, db_url)
    before = api.client.get("/v1/customers/C1", headers=api.h())

    def broken(*args, **kwargs):
        raise RuntimeError("history write failed")

    monkeypatch.setattr(persistence, "append", broken)
    r = api.client.patch("/v1/customers/C1", headers=api.h(), json={"credit_limit": "1.00"})
    problem(r, 500, "internal_error")
    after = api.client.get("/v1/customers/C1", headers=api.h())
    assert after.json() == before.json() and after.headers["ETag"] == before.headers["ETag"]
    assert len(_history(api)["items"]) == 4
