"""The HTTP API through FastAPI's TestClient, against a real SQLite file store (tmp_path),
the real engine and the shipped ``policies.yaml``.

Fixture: ``api`` (an ``Api``: the client plus one key per role). A test module takes it with
``api = sqlite_api.api``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies.yaml"
PROBLEM = "application/problem+json"

PRIME = {"years_in_business": 12, "risk_class": "low", "avg_days_late": "0.4"}


def put_condition(client: Any, cid: str, headers: dict[str, str]) -> dict[str, str]:
    """The precondition header of a ``PUT /v1/customers/{cid}`` (it needs one):
    ``If-None-Match: *`` for a new customer, else ``If-Match`` with the ETag just read."""
    r = client.get(f"/v1/customers/{cid}", headers=headers)
    if r.status_code == 404:
        return {"If-None-Match": "*"}
    assert r.status_code == 200, r.text
    return {"If-Match": r.headers["ETag"]}


class Api:
    """A client plus one API key per role."""

    def __init__(self, app: Any, db: Path):
        self.app = app
        self.db = db
        self.store = app.state.store
        self.client = TestClient(app, raise_server_exceptions=False)
        self.keys: dict[str, str] = {}
        for role in ("order_entry", "finance", "reviewer", "compliance", "policy_owner", "admin"):
            try:
                self.keys[role] = self.store.keys.create(role, name=f"test {role}")
            except ValueError:  # a role the store does not know (yet)
                pass

    def h(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def customer(self, cid: str = "CUST-1", **body: Any) -> dict[str, Any]:
        payload = {
            "currency": "EUR",
            "credit_limit": "100000.00",
            "open_receivables": "20000.00",
            "facts": dict(PRIME),
            **body,
        }
        headers = {**self.h("admin"), **put_condition(self.client, cid, self.h("admin"))}
        r = self.client.put(f"/v1/customers/{cid}", headers=headers, json=payload)
        assert r.status_code == 200, r.text
        return r.json()

    def decide(
        self,
        body: Any = None,
        *,
        raw: bytes | None = None,
        role: str = "order_entry",
        **fields: Any,
    ):
        if raw is None:
            payload = {
                "order_id": "SO-1",
                "customer_id": "CUST-1",
                "amount": "12500.00",
                "currency": "EUR",
                "payment_term_days": 60,
                **fields,
            }
            if body is not None:
                payload = body
            raw = json.dumps(payload).encode()
        return self.client.post(
            "/v1/decisions",
            headers={**self.h(role), "Content-Type": "application/json"},
            content=raw,
        )


def make_api(tmp_path: Path, **settings: Any) -> Api:
    db = tmp_path / "creditgate.db"
    app = create_app(Settings(database_url=f"sqlite:///{db}", policy_path=str(POLICY), **settings))
    return Api(app, db)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = make_api(tmp_path)
    yield a
    a.store.dispose()


def problem(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert set(body) >= {"type", "title", "status", "detail", "code", "errors"}
    assert body["status"] == status
    assert body["type"] == f"https://creditgate.dev/problems/{body['code']}"
    if code is not None:
        assert body["code"] == code, body
    assert "Traceback" not in r.text
    return body


def sql(db: Path, statement: str, *args: Any) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(statement, args).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


# -- invalid requests: 422 problem+json with the field path --------------------------------

VALID = (
    b'{"order_id": "SO-1", "customer_id": "CUST-1", "amount": "12500.00", "currency": "EUR", '
    b'"payment_term_days": 60'
)


# -- reading decisions ---------------------------------------------------------------------


def _three_decisions(api: Api) -> list[dict[str, Any]]:
    api.customer()
    api.customer("CUST-4", credit_limit="50000.00", open_receivables="45000.00")
    out = [
        api.decide(order_id="SO-1").json(),
        api.decide(order_id="SO-2", customer_id="CUST-4", amount="10000.00").json(),
        api.decide(order_id="SO-3", amount="10.00").json(),
    ]
    assert [d["outcome"] for d in out] == ["approve", "refer", "approve"]
    return out
