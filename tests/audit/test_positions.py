"""The audit proves the position, not only the chain: reservations and ledger events that
name decisions the decision log does not hold (the log deleted, or cut back with its head
rewritten) are reported by ``verify_consistency`` (SQLite and PostgreSQL;
tests/helpers/stores.py), and by ``creditgate audit verify``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli import app
from tests.helpers import ledger as ledger_helpers
from tests.helpers import stores
from tests.helpers.ledger import event
from tests.helpers.stores import evaluator, order, prime_customer

compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store
# the HTTP fixtures of tests/helpers/ledger.py (SQLite and PostgreSQL)
api = ledger_helpers.api
db_url = ledger_helpers.db_url


def decide(store, compiled, *order_ids):
    ev = evaluator(compiled)
    for oid in order_ids:
        store.decisions.decide(order(oid, "100.00"), ev, "erp")


def decision_ids(store):
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT order_id, decision_id FROM decision_log")).all())


def problems(store):
    c = store.audit.verify_consistency()
    return [(p["check"], p.get("order_id"), p["message"]) for p in c["problems"]]


@pytest.fixture
def ledger(store, compiled):
    """C1 with three approved orders, O1 invoiced (moves open orders), O2 cancelled, and an
    invoice of O9, an order never decided here (a legitimate event without a decision)."""
    prime_customer(store)
    decide(store, compiled, "O1", "O2", "O3")
    store.ledger.apply_event("C1", event("E1", "invoice_issued", "100.00", "O1"), "erp")
    store.ledger.apply_event("C1", event("E2", "order_cancelled", order_id="O2"), "erp")
    store.ledger.apply_event("C1", event("E3", "invoice_issued", "50.00", "O9"), "erp")
    assert store.audit.verify_chain()["ok"] is True  # clean: O9's invoice is no problem
    return decision_ids(store)


def test_whole_log_deleted_is_reported_by_the_reservations_and_events(store, ledger):
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM decision_log"))
        conn.execute(sa.text("DELETE FROM chain_head WHERE name = 'decision_log'"))
    result = store.audit.verify_chain()
    # the decision log's chain alone looks like a new, empty log
    assert (result["checked"], result["reason"], result["head_seq"]) == (0, None, None)
    assert result["ok"] is False
    assert problems(store) == [
        *(
            (
                "reservations",
                oid,
                f"reservation of order {oid} points to decision {ledger[oid]}, which the log "
                "does not hold",
            )
            for oid in ("O1", "O2", "O3")
        ),
        (
            "decisions_missing",
            None,
            "customer C1 has 2 ledger events and 3 reservations naming decisions the log does "
            "not hold",
        ),
    ]


def test_log_cut_back_with_rewritten_head_is_reported(store, compiled, ledger):
    decide(store, compiled, "O4", "O5")
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM decision_log WHERE seq > 3"))
        (h,) = conn.execute(sa.text("SELECT record_hash FROM decision_log WHERE seq = 3")).one()
        conn.execute(
            sa.text("UPDATE chain_head SET seq = 3, record_hash = :h WHERE name = 'decision_log'"),
            {"h": h},
        )
    result = store.audit.verify_chain()
    assert result["reason"] is None and result["checked"] == 3  # the chain is intact
    assert result["consistency"]["ok"] is False
    assert [(c, o) for c, o, _ in problems(store)] == [
        ("reservations", "O4"),
        ("reservations", "O5"),
        ("decisions_missing", None),
    ]
    assert problems(store)[-1][2] == (
        "customer C1 has 2 reservations naming decisions the log does not hold"
    )


def test_reservation_pointing_to_another_orders_decision(store, ledger):
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE reservations SET decision_id = :d WHERE order_id = 'O3'"),
            {"d": ledger["O1"]},
        )
    assert problems(store) == [
        (
            "reservations",
            "O3",
            f"reservation of order O3 points to decision {ledger['O1']}, which the log holds "
            "for order O1",
        )
    ]


def test_open_orders_edited_without_an_event_is_still_reported(store, ledger):
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET open_orders = '0.00' WHERE customer_id = 'C1'"))
    assert problems(store) == [
        (
            "open_orders",
            None,
            "open_orders is 0.00 but its open reservations add up to 100.00",
        )
    ]


def test_cli_reports_the_missing_decisions(store, ledger, monkeypatch):
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM decision_log"))
        conn.execute(sa.text("DELETE FROM chain_head WHERE name = 'decision_log'"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv(
        "CREDITGATE_DATABASE_URL", store.engine.url.render_as_string(hide_password=False)
    )
    r = CliRunner().invoke(app, ["audit", "verify"])
    assert r.exit_code == 1, r.output
    assert r.stdout.splitlines()[0] == "ok: decision log: 0 records, hash chain intact; no head"
    broken = r.stderr.splitlines()
    assert broken[0] == (
        f"BROKEN: ledger consistency: order O1 (customer C1): reservation of order O1 points "
        f"to decision {ledger['O1']}, which the log does not hold"
    )
    assert broken[-1] == (
        "BROKEN: ledger consistency: customer C1 has 2 ledger events and 3 reservations "
        "naming decisions the log does not hold"
    )


def test_http_audit_verify_answers_the_missing_decisions(api):
    api.customer()
    assert api.decide().json()["outcome"] == "approve"
    with api.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM decision_log"))
        conn.execute(sa.text("DELETE FROM chain_head WHERE name = 'decision_log'"))
    r = api.client.get("/v1/audit/verify", headers=api.h("compliance"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is False and body["checked"] == 0
    assert [(p["check"], p.get("order_id"), p["customer_id"]) for p in body["consistency"][
        "problems"
    ]] == [("reservations", "SO-1", "CUST-1"), ("decisions_missing", None, "CUST-1")]
    assert body["consistency"]["problems"][1]["message"] == (
        "customer CUST-1 has 1 reservation naming decisions the log does not hold"
    )
