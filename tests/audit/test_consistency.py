"""The audit's consistency checks: open orders against reservations, reservations against
the chained ledger events, stored policy texts against their sha256 (SQLite and
PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import sqlalchemy as sa

from tests.helpers import ledger
from tests.helpers.ledger import POLICY, Api, customer, ev, event, order, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
compiled = ledger.compiled
db_url = ledger.db_url
pg_url = ledger.pg_url
store = ledger.store


def _consistency_problems(store):
    result = store.audit.verify_chain()
    assert result["checked"] == result["head_seq"] or result["head_seq"] is None
    return result["ok"], [
        (p["check"], p.get("customer_id") or p.get("sha256")[:12], p["message"])
        for p in result["consistency"]["problems"]
    ]


def test_audit_checks_open_orders_against_the_open_reservations(api):
    api.customer()
    api.customer("CUST-2")
    assert api.decide(order_id="SO-1", amount="12500.00").json()["outcome"] == "approve"
    assert (
        api.decide(order_id="SO-2", customer_id="CUST-2", amount="300.00").json()["outcome"]
        == "approve"
    )
    inv = api.event(
        event_id="E1", type="invoice_issued", order_id="SO-1", amount="500.00", currency="EUR"
    )
    assert inv.status_code == 200, inv.text
    result = api.store.audit.verify_chain()
    assert result["ok"] and result["consistency"] == {
        "ok": True,
        "customers": 2,
        "policy_versions": 1,
        "problems": [],
        "problems_total": 0,
    }
    with api.store.engine.begin() as conn:  # open orders edited; the chains do not cover them
        conn.execute(
            sa.text("UPDATE customers SET open_orders = '0.00' WHERE customer_id = 'CUST-1'")
        )
    ok, problems = _consistency_problems(api.store)
    assert not ok
    assert problems == [
        (
            "open_orders",
            "CUST-1",
            "open_orders is 0.00 but its open reservations add up to 12000.00",
        )
    ]
    body = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
    assert body["ok"] is False and body["ledger"]["ok"] and body["checked"] == 2
    assert body["consistency"]["problems"][0]["customer_id"] == "CUST-1"
    with api.store.engine.begin() as conn:  # ...and a reservation moved to nobody
        conn.execute(
            sa.text("UPDATE customers SET open_orders = '12000.00' WHERE customer_id = 'CUST-1'")
        )
        conn.execute(
            sa.text("UPDATE reservations SET customer_id = 'GHOST' WHERE order_id = 'SO-2'")
        )
    ok, problems = _consistency_problems(api.store)
    assert problems == [
        ("open_orders", "CUST-2", "open_orders is 300.00 but its open reservations add up to 0.00"),
        ("open_orders", "GHOST", "open reservations of 300.00 but no such customer"),
    ]


def test_audit_checks_every_stored_policy_text_against_its_sha256(db_url, tmp_path):
    """An edited policy text is reported by the audit and refused by replay."""
    first = Api(db_url)
    try:
        first.customer()
        decision = first.decide().json()
    finally:
        first.store.dispose()
    v2 = tmp_path / "policy-v2.yaml"
    v2.write_text(POLICY.read_text().replace('version: "2026.11.1"', 'version: "2026.12.1"'))
    api = Api(db_url, v2)
    try:
        h = api.h("compliance")
        replay = api.client.get(f"/v1/decisions/{decision['decision_id']}/replay", headers=h)
        assert replay.status_code == 200 and replay.json()["identical"], replay.text
        old = decision["policy"]["sha256"]
        with api.store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE policy_versions SET source = replace(source, 'blacklisted', "
                    "'blacklisted ') WHERE sha256 = :sha"
                ),
                {"sha": old},
            )
        ok, problems = _consistency_problems(api.store)
        assert not ok and problems == [
            (
                "policy_source",
                old[:12],
                "the stored policy text does not hash to its sha256: it was changed after it "
                "was recorded",
            )
        ]
        api2 = Api(db_url, v2)  # a fresh service: nothing compiled yet
        try:
            body = problem(
                api2.client.get(
                    f"/v1/decisions/{decision['decision_id']}/replay", headers=api2.h("compliance")
                ),
                500,
                "policy_text_altered",
            )
            assert old[:12] in body["detail"]
        finally:
            api2.store.dispose()
    finally:
        api.store.dispose()


def test_audit_reports_logged_policies_without_a_stored_text(store, compiled):
    """Deleted policy texts: the log's records name them, replay is impossible."""
    customer(store)
    for oid in ("O1", "O2"):
        store.decisions.decide(order(oid, "100.00"), ev(compiled), "erp")
    assert store.audit.verify_chain()["ok"]
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM policy_versions"))
    ok, problems = _consistency_problems(store)
    assert not ok and problems == [
        (
            "policy_missing",
            compiled.policy.sha256[:12],
            "no stored policy text, but 2 decision log records name it: they cannot be replayed",
        )
    ]


def _reservation_problems(store):
    result = store.audit.verify_chain()
    assert result["ledger"]["ok"] and result["checked"] == result["head_seq"]
    return [
        (p["order_id"], p["customer_id"], p["message"])
        for p in result["consistency"]["problems"]
        if p["check"] == "reservations"
    ]


def test_audit_checks_every_reservation_against_the_chained_ledger_events(store, compiled):
    """The ledger chain holds every order_cancelled and invoice_issued: a reservation's
    status and invoiced amount edited outside the service (a cancelled order that would
    repeat as approve, credit freed) or a deleted reservation are reported."""
    customer(store)
    for oid, amount in (("O1", "10000.00"), ("O2", "500.00"), ("O3", "300.00")):
        assert (
            store.decisions.decide(order(oid, amount), ev(compiled), "erp")[0].outcome == "approve"
        )
    referred, _ = store.decisions.decide(order("O4", "95000.00"), ev(compiled), "erp")
    assert referred.outcome != "approve"
    store.ledger.apply_event("C1", event("E1", "invoice_issued", "4000.00", "O1"), "erp")
    store.ledger.apply_event("C1", event("E2", "order_cancelled", order_id="O2"), "erp")
    store.ledger.apply_event("C1", event("E3", "invoice_issued", "300.00", "O3"), "erp")
    store.ledger.apply_event("C1", event("E4", "invoice_issued", "10.00", "O4"), "erp")
    store.ledger.apply_event("C1", event("E5", "invoice_issued", "1.00", "O3"), "erp")  # beyond
    assert store.audit.verify_chain()["ok"] and _reservation_problems(store) == []

    def tampered(sql, undo=None):
        with store.engine.begin() as conn:
            conn.execute(sa.text(sql))
        found = _reservation_problems(store)
        assert not store.audit.verify_chain()["ok"]
        if undo:
            with store.engine.begin() as conn:
                conn.execute(sa.text(undo))
            assert store.audit.verify_chain()["ok"]
        return found

    # a cancelled order made 'invoiced': it would repeat as approve
    assert tampered(
        "UPDATE reservations SET status = 'invoiced' WHERE order_id = 'O2'",
        "UPDATE reservations SET status = 'cancelled' WHERE order_id = 'O2'",
    ) == [
        (
            "O2",
            "C1",
            "status is 'invoiced' but it has an order_cancelled event: expected 'cancelled'",
        )
    ]
    # an open order made 'cancelled' or 'invoiced': its credit freed
    for status in ("cancelled", "invoiced"):
        assert tampered(
            f"UPDATE reservations SET status = '{status}' WHERE order_id = 'O1'",
            "UPDATE reservations SET status = 'open' WHERE order_id = 'O1'",
        ) == [
            (
                "O1",
                "C1",
                f"status is '{status}' but no order_cancelled event, 4000.00 of 10000.00 "
                "invoiced: expected 'open'",
            )
        ]
    # a fully invoiced order's invoiced amount edited
    assert tampered(
        "UPDATE reservations SET invoiced = '0.00' WHERE order_id = 'O3'",
        "UPDATE reservations SET invoiced = '300.00' WHERE order_id = 'O3'",
    ) == [
        (
            "O3",
            "C1",
            "invoiced is 0.00 but its invoice_issued events moved 300.00",
        )
    ]
    # a cancelled order's reservation deleted: nothing left to refuse its repeat
    assert tampered("DELETE FROM reservations WHERE order_id = 'O2'") == [
        (
            "O2",
            "C1",
            "approved (decision log seq 2) but it has no reservation; an order_cancelled "
            "event but no reservation",
        )
    ]


def test_cli_audit_lists_consistency_problems(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    db = tmp_path / "cli.db"
    api = Api(f"sqlite:///{db}")
    try:
        api.customer()
        assert api.decide().json()["outcome"] == "approve"
    finally:
        api.store.dispose()
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", f"sqlite:///{db}")
    r = CliRunner().invoke(app, ["audit", "verify"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == (
        "ok: ledger consistency: 1 customer, 1 policy text; open orders match the open "
        "reservations, reservations match the ledger events, policy texts match their sha256 "
        "and every logged policy is stored"
    )
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET open_orders = '1.00 hacked'"))
        conn.execute(sa.text("UPDATE policy_versions SET source = source || '#'"))
    engine.dispose()
    r = CliRunner().invoke(app, ["audit", "verify"])
    assert r.exit_code == 1, r.output
    assert r.stdout.splitlines()[:3] == [
        line for line in r.stdout.splitlines() if line.startswith("ok: ")
    ]  # the three chains still intact
    errors = [line for line in r.stderr.splitlines() if line.startswith("BROKEN")]
    assert errors[0].startswith(
        "BROKEN: ledger consistency: customer CUST-1: a stored amount cannot be read "
        "(InvalidOperation"
    ), errors
    assert errors[1].startswith("BROKEN: ledger consistency: policy ")
    assert errors[1].endswith(
        ": the stored policy text does not hash to its sha256: it was changed after it was recorded"
    )
