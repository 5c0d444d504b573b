"""Which customer an order id belongs to: without a reservation, after a referral, under
concurrency (SQLite and PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from api.decisions.exceptions import OrderConflict
from api.ledger.exceptions import EventConflict
from tests.helpers import ledger
from tests.helpers.ledger import D, customer, ev, event, order, position, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
compiled = ledger.compiled
db_url = ledger.db_url
pg_url = ledger.pg_url
store = ledger.store


def test_an_order_without_a_reservation_keeps_its_owner(store, compiled):
    """A referred order has no reservation, yet it belongs to its customer: an invoice of
    it for another customer is refused, and an order id invoiced for one customer cannot
    be decided for another."""
    customer(store, "XA")
    customer(store, "XB")
    referred, _ = store.decisions.decide(order("XO1", "95000.00", "XA"), ev(compiled), "erp")
    assert referred.outcome != "approve"
    before = position(store, "XB")
    with pytest.raises(EventConflict, match="order 'XO1' belongs to customer 'XA'"):
        store.ledger.apply_event("XB", event("E1", "invoice_issued", "10.00", "XO1"), "erp")
    assert position(store, "XB") == before and store.ledger.list_events("XB") == []
    # its own customer may invoice it (a person approved it): unreserved exposure
    r = store.ledger.apply_event("XA", event("E1", "invoice_issued", "10.00", "XO1"), "erp")
    assert r["effect"]["unreserved"] == "10.00"
    # an order never decided here, invoiced for XA: owned by XA's ledger events
    store.ledger.apply_event("XA", event("E2", "invoice_issued", "20.00", "XO2"), "erp")
    with pytest.raises(EventConflict, match="order 'XO2' belongs to customer 'XA'"):
        store.ledger.apply_event("XB", event("E3", "invoice_issued", "5.00", "XO2"), "erp")
    with pytest.raises(OrderConflict, match="order 'XO2' has ledger events of customer 'XA'"):
        store.decisions.decide(order("XO2", "100.00", "XB"), ev(compiled), "erp")
    assert store.customers.get("XB")["open_orders"] == 0
    # the owner itself may still decide it
    _, kind = store.decisions.decide(order("XO2", "100.00", "XA"), ev(compiled), "erp")
    assert kind == "new"


def test_a_payment_never_settles_or_claims_another_customers_order(store, compiled):
    """Cash of one customer naming another customer's order is refused (409, nothing
    moved), so the order's own retries still repeat; a payment naming an order id nobody
    decided does not make that id its customer's."""
    customer(store, "XA")
    customer(store, "XB")
    approved, _ = store.decisions.decide(order("XO1", "100.00", "XA"), ev(compiled), "erp")
    assert approved.outcome == "approve"
    before = position(store, "XB")
    for kind in ("payment_received", "credit_note"):
        with pytest.raises(EventConflict, match="order 'XO1' belongs to customer 'XA'"):
            store.ledger.apply_event("XB", event(f"E-{kind}", kind, "10.00", "XO1"), "erp")
    assert position(store, "XB") == before and store.ledger.list_events("XB") == []
    again, kind = store.decisions.decide(order("XO1", "100.00", "XA"), ev(compiled), "erp")
    assert kind == "repeat" and again.decision_id == approved.decision_id
    # XA's own payment may name it
    paid = store.ledger.apply_event("XA", event("E1", "payment_received", "10.00", "XO1"), "erp")
    assert paid["effect"]["open_receivables"] == "-10.00"
    # a payment naming an unknown order id: recorded, and the id stays free
    store.ledger.apply_event("XA", event("E2", "payment_received", "5.00", "NOPE-1"), "erp")
    _, kind = store.decisions.decide(order("NOPE-1", "100.00", "XB"), ev(compiled), "erp")
    assert kind == "new"
    with pytest.raises(EventConflict, match="order 'NOPE-1' belongs to customer 'XB'"):
        store.ledger.apply_event("XA", event("E3", "credit_note", "5.00", "NOPE-1"), "erp")


def test_http_invoice_of_another_customers_referred_order_is_409(api):
    api.customer("XA")
    api.customer("XB")
    r = api.decide(order_id="XO1", customer_id="XA", amount="95000.00")
    assert r.status_code == 200 and r.json()["outcome"] != "approve", r.text
    body = problem(
        api.event(
            "XB",
            event_id="E1",
            type="invoice_issued",
            order_id="XO1",
            amount="10.00",
            currency="EUR",
        ),
        409,
        "conflict",
    )
    assert body["errors"][0]["code"] == "ledger_conflict"
    assert "belongs to customer 'XA'" in body["detail"], body


def test_one_order_id_never_belongs_to_two_customers_under_concurrency(store, compiled):
    # Two customers send the same order id at the same moment, 25 times. Exactly one of
    # each pair is decided; the other is an OrderConflict (409); no reservation ever moves
    # between customers and each customer's open orders equal its reservations.
    import threading

    customer(store, "A", limit="1000000.00", receivables="0.00")
    customer(store, "B", limit="1000000.00", receivables="0.00")
    outcomes: list[tuple[str, str]] = []

    def run(cid: str, oid: str, amount: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            store.decisions.decide(order(oid, amount, customer_id=cid), ev(compiled), "erp")
            outcomes.append((oid, cid))
        except OrderConflict:
            outcomes.append((oid, "conflict"))

    for k in range(25):
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=run, args=("A", f"R-{k}", "900.00", barrier)),
            threading.Thread(target=run, args=("B", f"R-{k}", "1.00", barrier)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    by_order: dict[str, list[str]] = {}
    for oid, who in outcomes:
        by_order.setdefault(oid, []).append(who)
    assert len(by_order) == 25
    for oid, whos in by_order.items():
        ordered = sorted(whos, key=lambda w: w == "conflict")
        assert ordered in (["A", "conflict"], ["B", "conflict"]), (oid, whos)
    rows, _ = store.decisions.search(limit=500)
    owners: dict[str, set[str]] = {}
    for r in rows:
        owners.setdefault(r["order_id"], set()).add(r["customer_id"])
    assert all(len(v) == 1 for v in owners.values()), owners
    with store.engine.begin() as conn:
        sums = dict(
            conn.execute(
                sa.text(
                    "SELECT customer_id, SUM(amount) FROM reservations "
                    "WHERE status = 'open' GROUP BY customer_id"
                )
            ).all()
        )
    for cid in ("A", "B"):
        assert D(str(sums.get(cid, 0))) == store.customers.get(cid)["open_orders"]
