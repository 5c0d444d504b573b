"""The store and the HTTP API (TestClient, the app's clock fixed at ``NOW``) on SQLite and
PostgreSQL, a fresh store per test, with the helpers for ledger events, FX rates and
customers (PostgreSQL: a database per test module, emptied before each test).

Fixtures: ``compiled``, ``pg_url``, ``db_url`` (SQLite, then PostgreSQL), ``store``, ``api``.
A test module takes the ones it needs with ``api = ledger.api`` etc."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from api.core.settings import Settings
from api.ledger.models import POSTED_BY
from api.store import Store
from engine.evaluate import evaluate, load
from tests.conftest import fresh_pg_database
from tests.helpers.sqlite_api import put_condition

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies.yaml"
ALL_TABLES = (
    "ledger_events",
    "chain_head",
    "customer_history",
    "fx_rates",
    "decision_log",
    "reservations",
    "customers",
    "api_keys",
    "policy_versions",
)
PRIME = {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.4"}
D = Decimal


@pytest.fixture(scope="module")
def compiled():
    return load(str(POLICY))


@pytest.fixture(scope="module")
def pg_url():
    with fresh_pg_database("cg_ledger") as url:
        yield url


def _truncate(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            names = set(sa.inspect(conn).get_table_names())
            tables = [t for t in ALL_TABLES if t in names]
            if tables:
                conn.execute(sa.text(f"TRUNCATE {', '.join(tables)}"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'creditgate.db'}"
    url = request.getfixturevalue("pg_url")
    _truncate(url)
    return url


@pytest.fixture
def store(db_url, compiled):
    s = Store(db_url)
    s.upgrade()
    s.policies.save(compiled.policy)  # as the service does at start (the audit needs it)
    yield s
    s.dispose()


def ev(compiled):
    return lambda req: evaluate(compiled, req)


def order(order_id, amount, customer_id="C1", currency="EUR", **kw):
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "amount": amount,
        "currency": currency,
        "payment_term_days": 30,
        "facts": {},
        **kw,
    }


def customer(store, cid="C1", limit="100000.00", receivables="20000.00", **facts):
    return store.customers.put(
        cid,
        currency="EUR",
        credit_limit=D(limit),
        open_receivables=D(receivables),
        facts={**PRIME, **facts},
    )


def event(event_id, type_, amount=None, order_id=None, currency="EUR"):
    e: dict[str, Any] = {"event_id": event_id, "type": type_}
    if order_id is not None:
        e["order_id"] = order_id
    if amount is not None:
        e["amount"] = D(amount)
        e["currency"] = currency
    return e


def position(store, cid="C1"):
    c = store.customers.get(cid)
    return c["open_orders"], c["open_receivables"], c["credit_balance"], c["exposure"]


# -- HTTP (TestClient) on SQLite and PostgreSQL ----------------------------------------------


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Api:
    def __init__(self, db_url: str, policy: Path = POLICY, clock=lambda: NOW, **settings):
        self.app = create_app(
            Settings(database_url=db_url, policy_path=str(policy), **settings), clock=clock
        )
        self.store = self.app.state.store
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.keys = {
            r: self.store.keys.create(r)
            for r in ("order_entry", "finance", "reviewer", "compliance", "policy_owner", "admin")
        }

    def h(self, role="admin", **extra):
        return {"Authorization": f"Bearer {self.keys[role]}", **extra}

    def customer(self, cid="CUST-1", **body):
        payload = {
            "currency": "EUR",
            "credit_limit": "100000.00",
            "open_receivables": "20000.00",
            "facts": dict(PRIME),
            **body,
        }
        condition = put_condition(self.client, cid, self.h())
        r = self.client.put(f"/v1/customers/{cid}", headers=self.h(**condition), json=payload)
        assert r.status_code == 200, r.text
        return r.json()

    def decide(self, **fields):
        payload = {
            "order_id": "SO-1",
            "customer_id": "CUST-1",
            "amount": "12500.00",
            "currency": "EUR",
            "payment_term_days": 30,
            **fields,
        }
        return self.client.post("/v1/decisions", headers=self.h("order_entry"), json=payload)

    def event(self, cid="CUST-1", role=None, **body):
        """Post a ledger event with the key of ``role`` (default: the role that posts
        its type, ``POSTED_BY``)."""
        role = role or POSTED_BY.get(body.get("type"), "order_entry")
        return self.client.post(f"/v1/customers/{cid}/events", headers=self.h(role), json=body)


@pytest.fixture
def api(db_url):
    a = Api(db_url)
    yield a
    a.store.dispose()


def problem(r, status, code=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def _rates(api, *rates):
    r = api.client.put(
        "/v1/fx-rates",
        headers=api.h(),
        json={
            "base": "EUR",
            "rates": [{"currency": c, "rate": rate, "as_of": d} for c, rate, d in rates],
        },
    )
    assert r.status_code == 200, r.text


# -- the ledger events' hash chain and the chain heads (both databases) ---------------------


def _rows(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def _exec(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _three_events(store, compiled):
    customer(store)
    store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    store.ledger.apply_event("C1", event("E1", "invoice_issued", "4000.00", "O1"), "erp")
    store.ledger.apply_event("C1", event("E2", "payment_received", "500.00"), "erp")
    store.ledger.apply_event("C1", event("E3", "order_cancelled", order_id="O1"), "erp")


# -- an unreadable stored record; the export's end line -----------------------------------


def _jsonl(r):
    return [json.loads(x) for x in r.text.splitlines()]
