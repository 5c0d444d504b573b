"""Ledger events, FX conversion, CSV import and the decision export: the store on SQLite and
PostgreSQL (fixtures as in tests/test_store.py), and the HTTP API (TestClient) on both."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.store import Store
from tests.helpers import ledger
from tests.helpers.ledger import (
    POLICY,
    ROOT,
    Api,
    _exec,
    _jsonl,
    _rows,
    _three_events,
    customer,
    ev,
    event,
    order,
    problem,
)

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
compiled = ledger.compiled
db_url = ledger.db_url
pg_url = ledger.pg_url
store = ledger.store


def test_migration_0002_downgrades_and_upgrades(tmp_path):
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = Config("alembic.ini")
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0001_initial")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers VALUES ('C1', 'EUR', '10.00', '0.00', '0.00', 0, '{}', "
                "'2026-01-01 00:00:00')"
            )
        )
    command.upgrade(cfg, "head")
    tables = set(sa.inspect(engine).get_table_names())
    assert {"ledger_events", "fx_rates"} <= tables
    with engine.connect() as conn:  # existing rows get a zero credit balance
        bal = conn.execute(sa.text("SELECT credit_balance FROM customers")).scalar_one()
    assert Decimal(bal) == 0
    command.downgrade(cfg, "0001_initial")
    assert "ledger_events" not in set(sa.inspect(engine).get_table_names())
    command.upgrade(cfg, "head")
    engine.dispose()


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


@pytest.fixture
def hacked(tmp_path):
    """An SQLite service with three decisions whose seq 2 has an unparseable created_at
    (edited outside the service; PostgreSQL's typed columns cannot hold such a value)."""
    db = tmp_path / "hacked.db"
    a = Api(f"sqlite:///{db}")
    a.customer()
    a.ids = [a.decide(order_id=f"SO-{i}", amount="100.00").json()["decision_id"] for i in range(3)]
    with a.store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE decision_log SET created_at = '2026-11-29 21:18:15.314667 hacked' "
                "WHERE seq = 2"
            )
        )
    a.db = db
    yield a
    a.store.dispose()


def test_an_unreadable_record_breaks_verify_cleanly(hacked):
    result = hacked.store.audit.verify_chain()
    assert (result["ok"], result["checked"], result["first_broken_seq"]) == (False, 1, 2)
    assert result["reason"].startswith("the record cannot be read (ValueError: ")
    assert result["head_seq"] == 3
    body = hacked.client.get("/v1/audit/verify", headers=hacked.h("compliance"))
    assert body.status_code == 200, body.text
    assert body.json()["first_broken_seq"] == 2 and body.json()["ok"] is False


def test_an_unreadable_record_in_the_cli_audit(hacked, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.setenv("CREDITGATE_DATABASE_URL", f"sqlite:///{hacked.db}")
    r = CliRunner().invoke(app, ["audit", "verify"])
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit)  # no traceback
    assert "BROKEN: decision log at seq 2: the record cannot be read (ValueError: " in r.stderr
    assert "Traceback" not in r.output


def test_an_unreadable_record_is_a_problem_on_reads(hacked):
    h = hacked.h("compliance")
    for url in ("/v1/decisions", f"/v1/decisions/{hacked.ids[1]}"):
        body = problem(hacked.client.get(url, headers=h), 500, "unreadable_record")
        assert "decision_log seq 2 cannot be read (ValueError: " in body["detail"]
    r = hacked.client.get(f"/v1/decisions/{hacked.ids[0]}", headers=h)
    assert r.status_code == 200  # the others still read
    r = hacked.client.get("/v1/decisions", params={"cursor": 2}, headers=h)
    assert [x["seq"] for x in r.json()["items"]] == [1]
    # the export: the unreadable record is in the first batch → a problem before any byte
    for fmt in ("jsonl", "csv"):
        body = problem(
            hacked.client.get(f"/v1/decisions/export?format={fmt}", headers=h),
            500,
            "unreadable_record",
        )
        assert "seq 2" in body["detail"]


def test_an_unreadable_record_mid_export_ends_it_as_incomplete(hacked, monkeypatch):
    """Past the first batch the status line is sent: the export ends with an explicit
    incomplete line and the connection is aborted (the server error propagates)."""
    from api.decisions.persistence import Decisions

    real = Decisions.iterate
    monkeypatch.setattr(Decisions, "iterate", lambda self, **kw: real(self, **kw, batch=1))
    h = hacked.h("compliance")
    strict = TestClient(hacked.app)  # raise_server_exceptions: the abort is visible
    for fmt in ("jsonl", "csv"):
        with pytest.raises(Exception, match="seq 2 cannot be read"):
            strict.get(f"/v1/decisions/export?format={fmt}", headers=h)
    lines = _jsonl(hacked.client.get("/v1/decisions/export?format=jsonl", headers=h))
    assert [x.get("seq") for x in lines[:-1]] == [1]
    assert lines[-1]["complete"] is False and lines[-1]["records"] == 1
    assert "decision_log seq 2 cannot be read (ValueError: " in lines[-1]["error"]
    text = hacked.client.get("/v1/decisions/export?format=csv", headers=h).text
    rows = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in rows] == ["seq", "1", "#incomplete"]
    assert rows[-1][1] == "1" and "seq 2 cannot be read" in rows[-1][2]


# -- ledger consistency in the audit; an altered policy text --------------------------------


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
    assert r.stdout.splitlines()[:2] == [
        line for line in r.stdout.splitlines() if line.startswith("ok: ")
    ]  # both chains still intact
    errors = r.stderr.splitlines()
    assert errors[0].startswith(
        "BROKEN: ledger consistency: customer CUST-1: a stored amount cannot be read "
        "(InvalidOperation"
    ), errors
    assert errors[1].startswith("BROKEN: ledger consistency: policy ")
    assert errors[1].endswith(
        ": the stored policy text does not hash to its sha256: it was changed after it was recorded"
    )


def test_a_real_server_aborts_an_export_that_fails_mid_stream(hacked, monkeypatch):
    """Over a real connection (uvicorn): the client gets the incomplete line and then a
    broken transfer (no final chunk), never what looks like a complete answer."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from api.decisions.persistence import Decisions

    real = Decisions.iterate
    monkeypatch.setattr(Decisions, "iterate", lambda self, **kw: real(self, **kw, batch=1))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(hacked.app, host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        for fmt, last in (("jsonl", b'"complete": false'), ("csv", b"#incomplete,1,")):
            body = b""
            with pytest.raises(httpx.RemoteProtocolError):
                with httpx.stream(
                    "GET",
                    f"http://127.0.0.1:{port}/v1/decisions/export?format={fmt}",
                    headers=hacked.h("compliance"),
                    timeout=10,
                ) as r:
                    assert r.status_code == 200
                    for chunk in r.iter_bytes():
                        body += chunk
            assert last in body.splitlines()[-1]
    finally:
        server.should_exit = True
        thread.join(10)
