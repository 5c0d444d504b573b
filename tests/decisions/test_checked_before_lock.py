"""Issue 8, part 6: a decision request is checked for size, shape and facts the policy
does not have before any write lock is taken, so a caller sending junk cannot stall other
customers' decisions.

Each test holds the database's write lock from another connection (SQLite: ``BEGIN
IMMEDIATE`` on the file; PostgreSQL: the chain head and the customers ``FOR UPDATE``, what
every decision locks) and sends junk: it must be refused with its own 4xx while the lock is
still held. A valid order sent at the same time waits for the lock (it is answered 200 only
after the lock is released), which shows the lock is real."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from tests.helpers import ledger
from tests.helpers.ledger import problem

compiled, pg_url, db_url, api = ledger.compiled, ledger.pg_url, ledger.db_url, ledger.api

ORDER = {
    "order_id": "SO-1",
    "customer_id": "CUST-1",
    "amount": "12500.00",
    "currency": "EUR",
    "payment_term_days": 30,
}


@contextmanager
def write_lock_held(url: str) -> Iterator[None]:
    """The lock every decision needs, held by another connection until the block ends."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sa.make_url(url).database, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tx = conn.begin()
            assert conn.execute(sa.text("SELECT seq FROM chain_head FOR UPDATE")).fetchall()
            conn.execute(sa.text("SELECT customer_id FROM customers FOR UPDATE"))
            yield
            tx.rollback()
    finally:
        engine.dispose()


JUNK = [
    # (what, body or raw bytes, status, code, path of the first error)
    ("a body over 1 MiB", b'{"order_id": "' + b"x" * (2 << 20) + b'"}', 413, None, None),
    ("1 MB of an array, not an object", b"[" + b"1," * 450_000 + b"1]", 422, None, None),
    ("a fact the policy does not have", {**ORDER, "facts": {"customer.shoe_size": 44}},
     422, None, "facts.customer.shoe_size"),
    ("a fact of the wrong type", {**ORDER, "facts": {"customer.country_risk": "purple"}},
     422, None, "facts.customer.country_risk"),
    ("an order group field the policy does not have", {**ORDER, "facts": {"order.colour": 1}},
     422, None, "facts.order.colour"),
    ("40,000 facts (900 KB)", {**ORDER, "facts": {f"customer.f{i}": i for i in range(40_000)}},
     422, "invalid_json", ""),
    ("1,001 facts", {**ORDER, "facts": {f"customer.f{i}": i for i in range(1_001)}},
     422, "invalid_request", "facts"),
    ("330,000 empty arrays (1 MB)", b"[" + b",".join([b"[]"] * 330_000) + b"]",
     422, "invalid_json", ""),
    ("a million brackets deep", b"[" * 500_000 + b"]" * 500_000, 422, "invalid_json", ""),
    ("14,000 unknown fields (1 MB)", {**ORDER, **{f"k{i}": "v" * 60 for i in range(14_000)}},
     422, "invalid_request", ""),
    ("900 facts the policy does not have", {**ORDER, "facts": {f"customer.f{i}": i
                                                               for i in range(900)}},
     422, "invalid_request", "facts.customer.f0"),
]


@pytest.mark.parametrize("what,body,status,code,path", JUNK, ids=[j[0] for j in JUNK])
def test_junk_is_refused_while_another_writer_holds_the_lock(api, db_url, what, body, status,
                                                             code, path):
    api.customer("CUST-1")
    assert api.decide(order_id="SO-0").status_code == 200  # the chain head exists
    headers = api.h("order_entry", **{"content-type": "application/json"})
    valid: list = []
    with write_lock_held(db_url):
        waiting = threading.Thread(target=lambda: valid.append(api.decide(order_id="SO-2")))
        waiting.start()
        if isinstance(body, bytes):
            r = api.client.post("/v1/decisions", headers=headers, content=body)
        else:
            r = api.client.post("/v1/decisions", headers=headers, json=body)
        answered_under_lock = not valid
        refusal = problem(r, status, code)
    waiting.join(60)
    assert answered_under_lock, "the valid order did not wait for the lock: the test proves nothing"
    assert valid and valid[0].status_code == 200, valid and valid[0].text
    if path is not None:
        assert refusal["errors"][0]["path"] == path, refusal
    message = refusal["errors"][0]["message"] if refusal.get("errors") else ""
    if what.startswith("40,000 facts") or what.startswith("330,000"):
        assert "more than 20,000 values" in message, refusal
    if what.startswith("a million"):
        assert "more than 10,000 arrays and objects" in message, refusal
    if what in ("1,001 facts", "14,000 unknown fields (1 MB)"):
        assert refusal["errors"][0]["code"] == "too_many", refusal
        assert len(refusal["errors"]) == 1
    if what == "900 facts the policy does not have":
        assert refusal["errors_total"] == 900 and len(refusal["errors"]) == 100
        assert {e["code"] for e in refusal["errors"]} == {"unknown_field"}
    # nothing of the junk was written: two decisions, SO-0 and SO-2
    page = api.client.get("/v1/decisions", headers=api.h("compliance")).json()
    assert sorted(r["order_id"] for r in page["items"]) == ["SO-0", "SO-2"]
