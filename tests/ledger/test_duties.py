"""Separation of duties on the ledger (issue 8, part 3): order entry posts the order
documents, finance posts what reduces receivables, neither posts the other's events, and a
refused event changes nothing. Over HTTP, on SQLite and PostgreSQL (tests/helpers/ledger.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from api.core.auth import ROLES
from api.ledger.models import POSTED_BY
from tests.helpers import ledger
from tests.helpers.ledger import problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url

BODIES = {
    "order_cancelled": {"order_id": "SO-1"},
    "invoice_issued": {"order_id": "SO-1", "amount": "5000.00", "currency": "EUR"},
    "payment_received": {"amount": "3000.00", "currency": "EUR"},
    "credit_note": {"amount": "700.00", "currency": "EUR"},
}


def _events(api) -> int:
    with api.store.engine.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM ledger_events")).scalar_one()


def test_each_role_posts_only_its_own_events(api):
    """Every role against every event type: only the posting role (and admin) gets
    through; the others get 403 at ``type`` naming the role needed, and the customer's
    position and the ledger are left as they were."""
    assert set(POSTED_BY) == set(BODIES)  # every event type has its poster
    api.customer()
    assert api.decide().json()["outcome"] == "approve"  # SO-1: 12,500.00 reserved
    before = api.client.get("/v1/customers/CUST-1", headers=api.h()).json()
    for type_, body in BODIES.items():
        for role in ROLES:
            if role in (POSTED_BY[type_], "admin"):
                continue
            r = api.event(event_id=f"{type_}-{role}", type=type_, role=role, **body)
            p = problem(r, 403, "forbidden")
            if role in ("order_entry", "finance"):  # may post events, not this one
                assert p["errors"] == [
                    {"path": "type", "code": "forbidden",
                     "message": f"needs role {POSTED_BY[type_]!r}"}
                ], p
                assert f"posted by the {POSTED_BY[type_]!r} role" in p["detail"]
    assert api.client.get("/v1/customers/CUST-1", headers=api.h()).json() == before
    assert _events(api) == 0

    # order entry invoices part of its order; finance books the payment and a credit note
    inv = api.event(event_id="INV-1", type="invoice_issued", **BODIES["invoice_issued"])
    assert inv.status_code == 200, inv.text
    pay = api.event(event_id="PAY-1", type="payment_received", **BODIES["payment_received"])
    assert pay.status_code == 200, pay.text
    cn = api.event(event_id="CN-1", type="credit_note", **BODIES["credit_note"])
    assert cn.status_code == 200, cn.text
    position = cn.json()["customer"]
    # 20,000.00 opening + 5,000.00 invoiced - 3,000.00 paid - 700.00 credited
    assert position["open_receivables"] == "21300.00"
    assert position["open_orders"] == "7500.00"  # 12,500.00 reserved - 5,000.00 invoiced
    assert position["exposure"] == "28800.00"
    # finance reads the position it books against (as order entry does)
    seen = api.client.get("/v1/customers/CUST-1", headers=api.h("finance"))
    assert seen.status_code == 200 and seen.json()["exposure"] == "28800.00", seen.text
    callers = _callers(api)
    assert [c.split(":")[0] for c in callers] == ["order_entry", "finance", "finance"]
    # admin may post any event (an operator's correction)
    r = api.event(event_id="CAN-1", type="order_cancelled", role="admin", order_id="SO-1")
    assert r.status_code == 200 and r.json()["customer"]["open_orders"] == "0.00"
    assert _events(api) == 4


def _callers(api) -> list[str]:
    with api.store.engine.connect() as c:
        return list(c.execute(sa.text("SELECT caller FROM ledger_events ORDER BY seq")).scalars())


@pytest.mark.parametrize("role", ["order_entry", "finance"])
def test_a_replayed_event_is_refused_to_the_wrong_role_too(api, role):
    """The role check comes before the idempotent replay: a recorded payment sent again by
    order entry is 403, not its recorded result."""
    api.customer()
    pay = api.event(event_id="PAY-1", type="payment_received", **BODIES["payment_received"])
    inv = api.event(event_id="INV-1", type="invoice_issued", **BODIES["invoice_issued"])
    assert (pay.status_code, inv.status_code) == (200, 200)
    other = {"order_entry": ("PAY-1", "payment_received"), "finance": ("INV-1", "invoice_issued")}
    event_id, type_ = other[role]
    problem(api.event(event_id=event_id, type=type_, role=role, **BODIES[type_]), 403, "forbidden")
    assert _events(api) == 2
