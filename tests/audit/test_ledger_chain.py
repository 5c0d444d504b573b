"""The ledger events' hash chain and its head: chained events, a deleted newest event, the
migration that chains existing events, a broken chain answering 503 (SQLite and
PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import sqlalchemy as sa

from api.store import Store
from tests.helpers import ledger
from tests.helpers.ledger import ROOT, _exec, _rows, _three_events, event

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
compiled = ledger.compiled
db_url = ledger.db_url
pg_url = ledger.pg_url
store = ledger.store


def test_ledger_events_are_hash_chained(store, db_url, compiled):
    _three_events(store, compiled)
    rows = _rows(
        db_url, "SELECT seq, event_id, prev_hash, record_hash FROM ledger_events ORDER BY seq"
    )
    assert [(r[0], r[1]) for r in rows] == [(1, "E1"), (2, "E2"), (3, "E3")]
    assert rows[0][2] == "0" * 64 and rows[1][2] == rows[0][3] and rows[2][2] == rows[1][3]
    # a replayed event is not appended again
    assert store.ledger.apply_event("C1", event("E2", "payment_received", "500.00"), "erp")[
        "replayed"
    ]
    result = store.audit.verify_chain()
    assert result["ok"] is True and result["checked"] == 1
    assert result["ledger"] == {
        "ok": True,
        "checked": 3,
        "first_broken_seq": None,
        "reason": None,
        "head_seq": 3,
        "head_hash": rows[2][3],
        "moved_clock": 0,
    }
    # an edited amount breaks the ledger chain at that event; the log stays intact
    _exec(db_url, "UPDATE ledger_events SET amount = '5.00' WHERE event_id = 'E2'")
    result = store.audit.verify_chain()
    assert (result["ok"], result["first_broken_seq"], result["reason"]) == (False, None, None)
    assert result["ledger"]["ok"] is False
    assert result["ledger"]["first_broken_seq"] == 2 and result["ledger"]["checked"] == 1
    assert "record_hash" in result["ledger"]["reason"]


def test_deleted_newest_ledger_event_is_detected(store, db_url, compiled):
    _three_events(store, compiled)
    _exec(db_url, "DELETE FROM ledger_events WHERE seq = 3")
    ledger = store.audit.verify_chain()["ledger"]
    assert (ledger["ok"], ledger["checked"], ledger["first_broken_seq"]) == (False, 2, 3)
    assert ledger["reason"] == "log ends at seq 2 but the head says 3"
    _exec(db_url, "DELETE FROM ledger_events")
    ledger = store.audit.verify_chain()["ledger"]
    assert (ledger["checked"], ledger["first_broken_seq"]) == (0, 1)
    assert ledger["reason"] == "log ends at seq 0 but the head says 3"


def test_migration_0003_chains_existing_events_and_sets_the_heads(db_url, compiled):
    from alembic import command
    from alembic.config import Config

    store = Store(db_url)
    try:
        store.upgrade()
        store.policies.save(compiled.policy)
        _three_events(store, compiled)
        before = _rows(db_url, "SELECT event_id, seq, record_hash FROM ledger_events ORDER BY seq")
        log_head = _rows(db_url, "SELECT seq, record_hash FROM decision_log ORDER BY seq DESC")[0]
        cfg = Config(str(ROOT / "alembic.ini"))
        cfg.set_main_option("script_location", str(ROOT / "api" / "core" / "migrations"))
        cfg.set_main_option("sqlalchemy.url", db_url)
        # revision 0006 refuses to drop a customer history with records: this database is
        # taken back to before 0003 with its decisions and events, not its history
        with store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM customer_history"))
        command.downgrade(cfg, "0002_ledger_fx")  # a database with records, before 0003
        names = set(sa.inspect(store.engine).get_table_names())
        assert "chain_head" not in names and "ledger_events" in names
        store.dispose()
        command.upgrade(cfg, "head")
        # the migration computes the same hashes the store wrote
        after = _rows(db_url, "SELECT event_id, seq, record_hash FROM ledger_events ORDER BY seq")
        assert after == before
        heads = dict(
            (r[0], (r[1], r[2]))
            for r in _rows(db_url, "SELECT name, seq, record_hash FROM chain_head")
        )
        assert heads == {"decision_log": log_head, "ledger_events": before[-1][1:]}
        result = store.audit.verify_chain()
        assert result["ok"] is True and (result["head_seq"], result["head_hash"]) == log_head
        assert result["ledger"]["checked"] == 3
        # and the chains go on from there
        store.ledger.apply_event("C1", event("E4", "payment_received", "1.00"), "erp")
        assert store.audit.verify_chain()["ledger"]["head_seq"] == 4
    finally:
        store.dispose()


def test_http_broken_chain_answers_503_and_never_an_approve(api):
    # The newest record and the chain head deleted directly in the database: the next order
    # (which would be approved) gets 503 audit_chain_broken and nothing is logged. The
    # ledger events have their own chain, intact here, so a payment is still recorded.
    api.customer()
    assert api.decide(order_id="SO-1").json()["outcome"] == "approve"
    assert api.decide(order_id="SO-2", amount="100.00").json()["outcome"] == "approve"
    with api.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM reservations WHERE order_id = 'SO-2'"))
        conn.execute(sa.text("DELETE FROM decision_log WHERE order_id = 'SO-2'"))
        conn.execute(sa.text("DELETE FROM chain_head WHERE name = 'decision_log'"))
    r = api.decide(order_id="SO-3", amount="100.00")
    assert r.status_code == 503, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == "audit_chain_broken" and "audit verify" in body["detail"]
    assert "approve" not in r.text
    rows, _ = api.store.decisions.search()
    assert [x["order_id"] for x in rows] == ["SO-1"]
    verify = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
    assert verify["ok"] is False and verify["head_seq"] is None
    paid = api.event(event_id="PAY-1", type="payment_received", amount="10.00", currency="EUR")
    assert paid.status_code == 200, paid.text
