"""The decision log's hash chain and its head: tampering, deleted and emptied records, a head
edited back or deleted, in the store (SQLite and PostgreSQL; tests/helpers/stores.py) and
through GET /v1/audit/verify (SQLite; tests/helpers/sqlite_api.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from api.core.chainhead import ChainBroken
from tests.helpers import sqlite_api, stores
from tests.helpers.sqlite_api import Api, _three_decisions, sql
from tests.helpers.stores import (
    evaluator,
    history_head,
    intact,
    last_record,
    log_count,
    order,
    prime_customer,
)

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api
# pytest fixtures from tests/helpers/stores.py (SQLite and PostgreSQL)
compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store


def test_tampering_is_detected(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    for i in range(4):
        store.decisions.decide(order(f"O{i}", "100.00"), ev, "erp")
    assert store.audit.verify_chain()["ok"]
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE decision_log SET caller = 'mallory' WHERE seq = 3"))
    result = store.audit.verify_chain()
    assert result["ok"] is False and result["first_broken_seq"] == 3 and result["checked"] == 2
    assert "record_hash" in result["reason"]


def test_deleted_record_is_detected(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    for i in range(3):
        store.decisions.decide(order(f"O{i}", "100.00"), ev, "erp")
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM decision_log WHERE seq = 2"))
    result = store.audit.verify_chain()
    assert (result["ok"], result["first_broken_seq"]) == (False, 3)


def test_deleted_newest_records_are_detected(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    for i in range(5):
        store.decisions.decide(order(f"O{i}", "100.00"), ev, "erp")
    head = last_record(store)
    assert head[0] == 5
    assert store.audit.verify_chain() == intact(5, head, history=history_head(store))
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM decision_log WHERE seq >= 4"))
    result = store.audit.verify_chain()
    assert {k: result[k] for k in ("ok", "checked", "first_broken_seq", "reason")} == {
        "ok": False,
        "checked": 3,
        "first_broken_seq": 4,
        "reason": "log ends at seq 3 but the head says 5",
    }
    assert (result["head_seq"], result["head_hash"]) == head
    assert result["ledger"]["ok"] is True
    # a new decision chains onto the head, so the gap stays visible
    store.decisions.decide(order("O9", "100.00"), ev, "erp")
    result = store.audit.verify_chain()
    assert (result["ok"], result["first_broken_seq"], result["checked"]) == (False, 6, 3)
    assert result["reason"] == "sequence gap: expected seq 4, found 6"


def test_emptied_log_and_missing_head_are_detected(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    for i in range(3):
        store.decisions.decide(order(f"O{i}", "100.00"), ev, "erp")
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM chain_head WHERE name = 'decision_log'"))
    result = store.audit.verify_chain()
    assert (result["ok"], result["checked"], result["first_broken_seq"]) == (False, 3, 1)
    assert result["reason"] == "the chain head is missing but the log has 3 records"
    assert (result["head_seq"], result["head_hash"]) == (None, None)
    # the next record does not restore a head over the evidence: refused (fail closed)
    with pytest.raises(ChainBroken, match="no chain head"):
        store.decisions.decide(order("O3", "100.00"), ev, "erp")
    assert log_count(store) == 3


def test_emptied_log_is_detected(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    for i in range(4):
        store.decisions.decide(order(f"O{i}", "100.00"), ev, "erp")
    assert store.audit.verify_chain() == intact(4, last_record(store), history=history_head(store))
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM decision_log"))
    result = store.audit.verify_chain()
    assert {k: result[k] for k in ("ok", "checked", "first_broken_seq", "reason")} == {
        "ok": False,
        "checked": 0,
        "first_broken_seq": 1,
        "reason": "log ends at seq 0 but the head says 4",
    }


def test_head_edited_back_refuses_new_records(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    for i in range(3):
        store.decisions.decide(order(f"O{i}", "100.00"), ev, "erp")
    seq2 = store.decisions.search()[0][1]["record_hash"]
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE chain_head SET seq = 2, record_hash = :h WHERE name = 'decision_log'"),
            {"h": seq2},
        )
    result = store.audit.verify_chain()
    assert (result["ok"], result["checked"], result["first_broken_seq"]) == (False, 3, 3)
    assert result["reason"] == "log ends at seq 3 but the head says 2"
    with pytest.raises(ChainBroken, match="beyond its chain head"):
        store.decisions.decide(order("O9", "100.00"), ev, "erp")
    assert log_count(store) == 3 and store.customers.get("C1")["open_orders"] == Decimal("300.00")


def test_head_deleted_with_the_newest_records_refuses_new_records(store, compiled):
    # Deleting the newest records AND the head row must not let the next append write a new
    # head over the gap: the store refuses to record (fail closed) and verify reports it.
    prime_customer(store)
    ev = evaluator(compiled)
    for i in range(3):
        store.decisions.decide(order(f"O{i}", "100.00"), ev, "erp")
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM decision_log WHERE seq = 3"))
        conn.execute(sa.text("DELETE FROM chain_head WHERE name = 'decision_log'"))
    result = store.audit.verify_chain()
    assert result["ok"] is False and result["checked"] == 2
    with pytest.raises(ChainBroken, match=r"records \(up to seq 2\) but no chain head"):
        store.decisions.decide(order("O9", "100.00"), ev, "erp")
    assert log_count(store) == 2
    assert store.audit.verify_chain()["ok"] is False  # still reported, nothing papered over


def test_audit_verify_detects_tampering(api: Api) -> None:
    _three_decisions(api)
    h = api.h("compliance")
    ((head_hash,),) = sql(api.db, "SELECT record_hash FROM decision_log WHERE seq = 3")
    ((history_hash,),) = sql(api.db, "SELECT record_hash FROM customer_history WHERE seq = 2")
    assert api.client.get("/v1/audit/verify", headers=h).json() == {
        "ok": True,
        "checked": 3,
        "first_broken_seq": None,
        "reason": None,
        "head_seq": 3,
        "head_hash": head_hash,
        "moved_clock": 0,
        "ledger": {
            "ok": True,
            "checked": 0,
            "first_broken_seq": None,
            "reason": None,
            "head_seq": None,
            "head_hash": None,
            "moved_clock": 0,
        },
        "customer_history": {  # the two customers' creations
            "ok": True,
            "checked": 2,
            "first_broken_seq": None,
            "reason": None,
            "head_seq": 2,
            "head_hash": history_hash,
            "moved_clock": 0,
        },
        "consistency": {
            "ok": True,
            "customers": 2,
            "policy_versions": 1,
            "problems": [],
            "problems_total": 0,
        },
    }
    sql(api.db, "UPDATE decision_log SET outcome = 'approve' WHERE seq = 2")
    body = api.client.get("/v1/audit/verify", headers=h).json()
    assert body["ok"] is False
    assert body["first_broken_seq"] == 2
    assert body["checked"] == 1
    assert body["reason"]


def test_audit_verify_detects_a_deleted_record(api: Api) -> None:
    _three_decisions(api)
    sql(api.db, "DELETE FROM decision_log WHERE seq = 2")
    body = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
    assert body["ok"] is False and body["first_broken_seq"] == 3


def test_audit_verify_detects_deleted_newest_records(api: Api) -> None:
    _three_decisions(api)
    sql(api.db, "DELETE FROM decision_log WHERE seq = 3")
    body = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
    assert (body["ok"], body["checked"], body["first_broken_seq"]) == (False, 2, 3)
    assert body["reason"] == "log ends at seq 2 but the head says 3"
    assert body["head_seq"] == 3
