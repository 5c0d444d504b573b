"""Ledger events, FX conversion, CSV import and the decision export: the store on SQLite and
PostgreSQL (fixtures as in tests/test_store.py), and the HTTP API (TestClient) on both."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.fx.exceptions import FxRateMissing
from api.store import Store
from tests.helpers import ledger
from tests.helpers.ledger import (
    POLICY,
    ROOT,
    Api,
    D,
    _exec,
    _jsonl,
    _rates,
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


# -- FX ---------------------------------------------------------------------------------


@pytest.mark.dates
def test_fx_conversion_latest_rate_on_or_before_the_order_date(store, compiled):
    customer(store)
    store.fx.put_rates(
        "EUR",
        [
            {"currency": "USD", "rate": D("0.9"), "as_of": date(2026, 11, 20)},
            {"currency": "USD", "rate": D("0.92345"), "as_of": date(2026, 11, 27)},
            {"currency": "USD", "rate": D("0.5"), "as_of": date(2026, 12, 1)},
        ],
    )
    # today (the store's clock) is the day after the order: the rate of 2026-12-01 is not yet
    # known, so only the rate on or before the order date is a candidate
    kw = {"decision_currency": "EUR", "minor_units": 2, "today": date(2026, 11, 30)}
    # 1000.50 USD x 0.92345 = 923.911725 -> 923.91 (half-even to the cent)
    o = order("O1", "1000.50", currency="USD", order_date="2026-11-29")
    d, kind = store.decisions.decide(o, ev(compiled), "erp", **kw)
    assert d.order_amount == D("923.91") and d.currency == "EUR"
    assert str(d.trail.inputs["order.amount"]) == "923.91"
    row = store.decisions.get(d.decision_id)
    assert row["request"]["order"]["amount"] == "923.91"
    assert row["request"]["order"]["currency"] == "EUR"
    assert row["fx"] == {
        "original_amount": "1000.50",
        "original_currency": "USD",
        "currency": "EUR",
        "rate": "0.92345",
        "rate_as_of": "2026-11-27",
        "order_date": "2026-11-29",
        "rounding": "half-even to 0.01",
        "converted_amount": "923.91",
    }
    assert store.customers.get("C1")["open_orders"] == D("923.91")
    # half-even on an exact tie: 0.125 EUR -> 0.12; 0.375 -> 0.38
    store.fx.put_rates(
        "EUR", [{"currency": "JPY", "rate": D("0.00625"), "as_of": date(2026, 1, 1)}]
    )
    d2, _ = store.decisions.decide(order("O2", "20", currency="JPY"), ev(compiled), "erp", **kw)
    assert d2.order_amount == D("0.12")
    d3, _ = store.decisions.decide(order("O3", "60", currency="JPY"), ev(compiled), "erp", **kw)
    assert d3.order_amount == D("0.38")
    # repeat: the stored decision and its fx record
    again, kind = store.decisions.decide(o, ev(compiled), "erp", **kw)
    assert kind == "repeat" and again.decision_id == d.decision_id
    rows, _ = store.decisions.search(customer_id="C1", limit=1)
    assert rows[0]["kind"] == "repeat" and rows[0]["fx"]["rate"] == "0.92345"
    # no rate on or before the date: an error, never 1:1, nothing written
    before = store.customers.get("C1")["open_orders"]
    with pytest.raises(FxRateMissing):
        store.decisions.decide(
            order("O4", "10.00", currency="USD", order_date="2026-11-19"), ev(compiled), "erp", **kw
        )
    with pytest.raises(FxRateMissing):
        store.decisions.decide(order("O5", "10.00", currency="GBP"), ev(compiled), "erp", **kw)
    assert store.customers.get("C1")["open_orders"] == before
    assert store.audit.verify_chain()["ok"] and store.audit.verify_chain()["checked"] == 4
    # tampering with the fx record is detected
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE decision_log SET fx = NULL WHERE seq = 1"))
    assert store.audit.verify_chain()["first_broken_seq"] == 1


@pytest.mark.dates
def test_fx_rates_are_replaced_and_validated(store):
    store.fx.put_rates("EUR", [{"currency": "USD", "rate": D("0.9"), "as_of": date(2026, 1, 1)}])
    store.fx.put_rates("EUR", [{"currency": "USD", "rate": D("0.8"), "as_of": date(2026, 1, 1)}])
    assert store.fx.rate("EUR", "USD", date(2026, 6, 1)) == (D("0.8"), date(2026, 1, 1))
    assert store.fx.rate("EUR", "USD", date(2025, 12, 31)) is None
    assert store.fx.has_rates("EUR", "USD") and not store.fx.has_rates("EUR", "GBP")
    for bad in (D("-1"), D("0"), D("1.00000000001"), 0.5):
        with pytest.raises(ValueError):
            store.fx.put_rates("EUR", [{"currency": "USD", "rate": bad, "as_of": date(2026, 2, 1)}])


@pytest.mark.dates
def test_http_fx_rates_and_conversion(api):
    api.customer()
    # a currency without any loaded rate: refused as before (currency_mismatch)
    b = problem(api.decide(currency="USD"), 422, "invalid_request")
    assert b["errors"][0]["code"] == "currency_mismatch"
    r = api.client.put(
        "/v1/fx-rates",
        headers=api.h(),
        json={"base": "EUR", "rates": [{"currency": "USD", "rate": "0.92", "as_of": "2026-11-24"}]},
    )
    assert r.status_code == 200 and r.json() == {"base": "EUR", "stored": 1}
    d = api.decide(currency="USD", amount="1000.00", order_date="2026-11-29")
    assert d.status_code == 200, d.text
    assert d.json()["order_amount"] == "920.00" and d.json()["currency"] == "EUR"
    row = api.client.get(f"/v1/decisions/{d.json()['decision_id']}", headers=api.h("compliance"))
    assert row.json()["fx"]["rate"] == "0.92" and row.json()["fx"]["rate_as_of"] == "2026-11-24"
    assert d.json()["fx"] == row.json()["fx"]  # the answer shows the rate and its date too
    assert row.json()["fx"]["original_amount"] == "1000.00"
    replay = api.client.get(
        f"/v1/decisions/{d.json()['decision_id']}/replay", headers=api.h("compliance")
    )
    assert replay.json()["identical"] is True
    # rates exist for USD, but none on or before the order date: fx_rate_missing
    b = problem(
        api.decide(order_id="SO-2", currency="USD", order_date="2026-11-23"), 422, "fx_rate_missing"
    )
    assert b["errors"][0]["path"] == "currency"
    bad = [
        (
            {"base": "USD", "rates": [{"currency": "GBP", "rate": "1", "as_of": "2026-01-01"}]},
            "base",
        ),
        (
            {"base": "EUR", "rates": [{"currency": "USD", "rate": "-1", "as_of": "2026-01-01"}]},
            "rates[0].rate",
        ),
        (
            {"base": "EUR", "rates": [{"currency": "USD", "rate": 0.9, "as_of": "2026-01-01"}]},
            "rates[0].rate",
        ),
        (
            {"base": "EUR", "rates": [{"currency": "USD", "rate": "1", "as_of": "soon"}]},
            "rates[0].as_of",
        ),
        ({"base": "EUR", "rates": []}, "rates"),
    ]
    for body, path in bad:
        b = problem(api.client.put("/v1/fx-rates", headers=api.h(), json=body), 422)
        assert any(e["path"] == path for e in b["errors"]), (body, b)
    problem(api.client.put("/v1/fx-rates", headers=api.h("order_entry"), json=bad[0][0]), 403)


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


@pytest.mark.dates
def test_http_fx_rates_duplicate_rows_are_refused_and_nothing_is_stored(api):
    rates = [
        {"currency": "USD", "rate": "0.90", "as_of": "2026-11-01"},
        {"currency": "USD", "rate": "0.91", "as_of": "2026-11-02"},
        {"currency": "GBP", "rate": "1.15", "as_of": "2026-11-01"},
        {"currency": "USD", "rate": "0.95", "as_of": "2026-11-02"},
        {"currency": "USD", "rate": "0.90", "as_of": "2026-11-01"},
    ]
    r = api.client.put("/v1/fx-rates", headers=api.h(), json={"base": "EUR", "rates": rates})
    b = problem(r, 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [
        ("rates[3]", "duplicate_rate"),
        ("rates[4]", "duplicate_rate"),
    ]
    assert "rates[3] duplicates rates[1]" in b["errors"][0]["message"]
    assert "rates[4] duplicates rates[0]" in b["errors"][1]["message"]
    assert not api.store.fx.has_rates("EUR", "USD")
    assert not api.store.fx.has_rates("EUR", "GBP")
    # the same date for two currencies is no duplicate
    ok = [rates[0], rates[2]]
    r = api.client.put("/v1/fx-rates", headers=api.h(), json={"base": "EUR", "rates": ok})
    assert r.status_code == 200 and r.json()["stored"] == 2


@pytest.mark.dates
def test_http_foreign_amount_decimals_follow_the_order_currency(api):
    api.customer()
    _rates(api, ("USD", "0.92", "2026-11-29"), ("JPY", "0.0061", "2026-11-29"))
    for currency, amount, units in (("JPY", "100.5", 0), ("USD", "10.123", 2)):
        b = problem(api.decide(currency=currency, amount=amount), 422, "invalid_request")
        assert b["errors"] == [
            {
                "path": "amount",
                "code": "too_many_decimals",
                "message": f"{amount} has more than {units} decimal{'s' if units != 1 else ''} "
                f"({currency})",
            }
        ]
    # 10.12 USD under the EUR policy: accepted; x 0.92 = 9.3104 -> 9.31 (half-even)
    d = api.decide(order_id="SO-U", currency="USD", amount="10.12")
    assert d.status_code == 200, d.text
    assert d.json()["order_amount"] == "9.31" and d.json()["fx"]["original_amount"] == "10.12"
    # 1001 JPY x 0.0061 = 6.1061 -> 6.11; the policy currency's own unit still applies to EUR
    d = api.decide(order_id="SO-J", currency="JPY", amount="1001")
    assert d.status_code == 200 and d.json()["order_amount"] == "6.11", d.text
    b = problem(api.decide(order_id="SO-X", amount="1.001"), 422, "invalid_request")
    assert b["errors"][0]["message"] == "1.001 has more than 2 decimals (EUR)"


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


@pytest.mark.dates
def test_http_order_date_cannot_lower_the_converted_amount(api):
    # GBP 1.15 today, 1.00 six days ago; limit 1,000.00 EUR. 900 GBP today is 1,035.00 EUR
    # (over the limit); backdating the order to pick the older, lower rate must not make
    # it fit: the higher of the order-date rate and the latest rate is used.
    api.customer(credit_limit="1000.00", open_receivables="0.00")
    _rates(api, ("GBP", "1.00", "2026-11-23"), ("GBP", "1.15", "2026-11-29"))
    first = api.decide(order_id="SO-G", currency="GBP", amount="900.00")
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] != "approve"
    assert first.json()["order_amount"] == "1035.00"
    # the same order, amended only in its date: re-decided, at the same (higher) rate
    amended = api.decide(
        order_id="SO-G", currency="GBP", amount="900.00", order_date="2026-11-23"
    ).json()
    assert (amended["kind"], amended["outcome"]) == ("amended", first.json()["outcome"])
    assert amended["order_amount"] == "1035.00"
    assert amended["fx"]["rate"] == "1.15" and amended["fx"]["rate_as_of"] == "2026-11-29"
    assert amended["fx"]["order_date"] == "2026-11-23"
    assert amended["fx"]["candidates"] == [
        {"rate": "1", "as_of": "2026-11-23"},
        {"rate": "1.15", "as_of": "2026-11-29"},
    ]
    # and when the order date's rate is the higher one, that one is used
    _rates(api, ("GBP", "1.20", "2026-11-24"))
    older = api.decide(
        order_id="SO-H", currency="GBP", amount="100.00", order_date="2026-11-25"
    ).json()
    assert (older["fx"]["rate"], older["order_amount"]) == ("1.2", "120.00")


@pytest.mark.dates
def test_http_orders_in_three_decimal_currencies_are_accepted_and_converted(api):
    api.customer()
    _rates(api, ("KWD", "3.0", "2026-11-29"))
    # 1.234 KWD x 3.0 = 3.702 -> 3.70 EUR (half-even); the original keeps KWD's 3 decimals
    d = api.decide(order_id="SO-K", currency="KWD", amount="1.234")
    assert d.status_code == 200, d.text
    assert d.json()["order_amount"] == "3.70"
    assert d.json()["fx"]["original_amount"] == "1.234"
    assert d.json()["fx"]["original_currency"] == "KWD"
    b = problem(api.decide(order_id="SO-K2", currency="KWD", amount="1.2345"), 422)
    assert b["errors"] == [
        {
            "path": "amount",
            "code": "too_many_decimals",
            "message": "1.2345 has more than 3 decimals (KWD)",
        }
    ]
    assert "Decimal(" not in json.dumps(b)


@pytest.mark.dates
def test_store_money_follows_the_order_currency_and_messages_show_no_repr(store, compiled):
    customer(store)
    store.fx.put_rates(
        "EUR",
        [
            {"currency": "KWD", "rate": D("3"), "as_of": date(2026, 1, 1)},
            {"currency": "JPY", "rate": D("0.0061"), "as_of": date(2026, 1, 1)},
        ],
    )
    kw = {"decision_currency": "EUR", "minor_units": 2, "today": date(2026, 1, 2)}
    d, _ = store.decisions.decide(
        order("O-K", D("1.234"), currency="KWD"), ev(compiled), "erp", **kw
    )
    assert d.order_amount == D("3.70")
    assert store.decisions.get(d.decision_id)["fx"]["original_amount"] == "1.234"
    with pytest.raises(ValueError) as e:
        store.decisions.decide(
            order("O-K2", D("1.2345"), currency="KWD"), ev(compiled), "erp", **kw
        )
    assert str(e.value) == "amount: 1.2345 has more than 3 decimals (KWD)"
    with pytest.raises(ValueError) as e:
        store.decisions.decide(order("O-E", D("1.234"), currency="EUR"), ev(compiled), "erp", **kw)
    assert str(e.value) == "amount: 1.234 has more than 2 decimals (EUR)"
    # JPY has no minor unit: the original amount is shown without decimals
    d, _ = store.decisions.decide(
        order("O-J", D("150000.00"), currency="JPY"), ev(compiled), "erp", **kw
    )
    assert store.decisions.get(d.decision_id)["fx"]["original_amount"] == "150000"
    assert d.order_amount == D("915.00")


@pytest.mark.dates
def test_http_jpy_original_amount_has_no_decimals(api):
    api.customer()
    _rates(api, ("JPY", "0.0061", "2026-11-29"))
    d = api.decide(order_id="SO-J", currency="JPY", amount="150000.00")
    assert d.status_code == 200, d.text
    assert d.json()["fx"]["original_amount"] == "150000"
    assert d.json()["order_amount"] == "915.00"


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


@pytest.mark.dates
def test_http_backdating_cannot_use_a_rate_that_is_stale_today(api):
    # Only a 14-day-old rate (the feed stopped): refused without order_date, and also with
    # an order_date 7 days back, for which that rate would be "only" 7 days old.
    api.customer()
    _rates(api, ("USD", "0.5", "2026-11-15"))
    b = problem(api.decide(order_id="S1", currency="USD", amount="1000.00"), 422, "fx_rate_missing")
    assert "2026-11-15" in b["detail"]
    b = problem(
        api.decide(order_id="S2", currency="USD", amount="1000.00", order_date="2026-11-22"),
        422,
        "fx_rate_missing",
    )
    assert "2026-11-15" in b["detail"] and "2026-11-29" in b["detail"]
    assert api.store.decisions.search()[0] == []
    # a fresh rate loaded: decided
    _rates(api, ("USD", "0.92", "2026-11-28"))
    d = api.decide(order_id="S3", currency="USD", amount="1000.00", order_date="2026-11-22")
    assert d.status_code == 200 and d.json()["order_amount"] == "920.00", d.text
