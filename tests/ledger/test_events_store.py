"""Ledger events on the store: invoices move orders to receivables, cancellations release,
payments and credit notes, idempotency by event id, bad events (SQLite and PostgreSQL;
tests/helpers/ledger.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from api.decisions.exceptions import OrderConflict
from api.ledger.exceptions import EventConflict
from tests.helpers import ledger
from tests.helpers.ledger import D, customer, ev, event, order, position

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
compiled = ledger.compiled
db_url = ledger.db_url
pg_url = ledger.pg_url
store = ledger.store


def test_invoice_moves_orders_to_receivables_without_double_counting(store, compiled):
    customer(store)
    d, _ = store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    assert d.outcome == "approve"
    assert position(store) == (D("10000.00"), D("20000.00"), 0, D("30000.00"))
    r = store.ledger.apply_event("C1", event("E1", "invoice_issued", "4000.00", "O1"), "erp")
    assert r["effect"] == {
        "open_orders": "-4000.00",
        "open_receivables": "4000.00",
        "credit_balance": "0.00",
    }
    assert r["replayed"] is False
    assert position(store) == (D("6000.00"), D("24000.00"), 0, D("30000.00"))
    store.ledger.apply_event("C1", event("E3", "invoice_issued", "6000.00", "O1"), "erp")
    assert position(store) == (0, D("30000.00"), 0, D("30000.00"))
    # fully invoiced: nothing left to cancel, the order cannot be amended
    with pytest.raises(EventConflict):
        store.ledger.apply_event("C1", event("E5", "order_cancelled", order_id="O1"), "erp")
    with pytest.raises(OrderConflict, match="^order 'O1' is fully invoiced; it cannot be amend"):
        store.decisions.decide(order("O1", "500.00"), ev(compiled), "erp")
    # the same order again (same content) is still a repeat: the approved amount is still
    # counted (now as receivables), unlike a cancelled order's
    again, kind = store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    assert (kind, again.decision_id, again.outcome) == ("repeat", d.decision_id, "approve")
    assert position(store) == (0, D("30000.00"), 0, D("30000.00"))
    assert [e["event_id"] for e in store.ledger.list_events("C1")] == ["E1", "E3"]


def test_invoice_beyond_or_without_a_reservation_is_new_exposure(store, compiled):
    # An invoice is a receivable whatever was decided: never refused (that would hide
    # exposure), never counted twice. What no open reservation covers is `unreserved`.
    customer(store)
    d, _ = store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    assert d.outcome == "approve"
    r = store.ledger.apply_event("C1", event("E1", "invoice_issued", "10000.01", "O1"), "erp")
    assert r["effect"] == {
        "open_orders": "-10000.00",
        "open_receivables": "10000.01",
        "credit_balance": "0.00",
        "unreserved": "0.01",
    }
    assert position(store) == (0, D("30000.01"), 0, D("30000.01"))
    # fully invoiced already: another invoice is all new exposure
    r = store.ledger.apply_event("C1", event("E2", "invoice_issued", "1.00", "O1"), "erp")
    assert r["effect"]["unreserved"] == "1.00" and r["effect"]["open_orders"] == "0.00"
    # a referred order (no reservation) approved by a person and invoiced: counted
    big, _ = store.decisions.decide(order("O2", "95000.00"), ev(compiled), "erp")
    assert big.outcome != "approve"
    r = store.ledger.apply_event("C1", event("E3", "invoice_issued", "95000.00", "O2"), "erp")
    assert r["effect"]["unreserved"] == "95000.00"
    assert position(store) == (0, D("125001.01"), 0, D("125001.01"))
    # ... and a new order now sees that exposure (over the 100,000 limit: not approved)
    after, _ = store.decisions.decide(order("O3", "100.00"), ev(compiled), "erp")
    assert after.outcome != "approve"


def test_partly_invoiced_order_repeats_but_cannot_be_amended(store, compiled):
    customer(store)
    d, _ = store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    store.ledger.apply_event("C1", event("E1", "invoice_issued", "4000.00", "O1"), "erp")
    again, kind = store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    assert (kind, again.decision_id, again.outcome) == ("repeat", d.decision_id, "approve")
    with pytest.raises(OrderConflict, match=r"partly invoiced \(4000.00 of 10000.00\)"):
        store.decisions.decide(order("O1", "9000.00"), ev(compiled), "erp")
    assert position(store) == (D("6000.00"), D("24000.00"), 0, D("30000.00"))


def test_repeat_of_a_cancelled_order_is_a_conflict(store, compiled):
    customer(store)
    d, _ = store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    assert d.outcome == "approve"
    store.ledger.apply_event("C1", event("E1", "order_cancelled", order_id="O1"), "erp")
    before = store.decisions.search()[0][0]
    # the same content again: not the stored approve (it no longer holds), a conflict
    with pytest.raises(OrderConflict, match="^order 'O1' was cancelled; decide a new order id$"):
        store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    with pytest.raises(OrderConflict, match="^order 'O1' was cancelled; decide a new order id$"):
        store.decisions.decide(order("O1", "5000.00"), ev(compiled), "erp")
    # nothing was logged or reserved by the refusals
    rows, _ = store.decisions.search()
    assert len(rows) == 1 and rows[0]["seq"] == before["seq"]
    assert position(store) == (0, D("20000.00"), 0, D("20000.00"))
    # a new order id is decided normally
    assert store.decisions.decide(order("O2", "10000.00"), ev(compiled), "erp")[1] == "new"


def test_cancel_releases_the_open_part(store, compiled):
    customer(store)
    store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    store.ledger.apply_event("C1", event("E1", "invoice_issued", "2500.00", "O1"), "erp")
    r = store.ledger.apply_event("C1", event("E2", "order_cancelled", order_id="O1"), "erp")
    assert r["effect"]["open_orders"] == "-7500.00"
    assert position(store) == (0, D("22500.00"), 0, D("22500.00"))
    with pytest.raises(EventConflict, match="cancelled"):
        store.ledger.apply_event("C1", event("E3", "order_cancelled", order_id="O1"), "erp")
    with pytest.raises(OrderConflict):  # a cancelled order is not re-opened by an amendment
        store.decisions.decide(order("O1", "100.00"), ev(compiled), "erp")
    with pytest.raises(EventConflict, match="no approved reservation"):
        store.ledger.apply_event("C1", event("E4", "order_cancelled", order_id="NOPE"), "erp")


def test_payments_and_credit_notes_are_never_blocked(store, compiled):
    customer(store, receivables="1000.00", blacklisted=True, insolvency=True)
    d, _ = store.decisions.decide(order("O1", "100.00"), ev(compiled), "erp")
    assert d.outcome == "decline"  # the customer's state blocks orders ...
    # ... but never a payment or a credit note
    store.ledger.apply_event("C1", event("P1", "payment_received", "600.00"), "erp")
    store.ledger.apply_event("C1", event("N1", "credit_note", "300.00", order_id="O1"), "erp")
    assert position(store) == (0, D("100.00"), 0, D("100.00"))
    # beyond the receivables: the excess is a credit balance, receivables stay at zero
    r = store.ledger.apply_event("C1", event("P2", "payment_received", "250.00"), "erp")
    assert r["effect"] == {
        "open_orders": "0.00",
        "open_receivables": "-100.00",
        "credit_balance": "150.00",
    }
    assert position(store) == (0, 0, D("150.00"), 0)


def test_credit_balance_is_offset_against_the_next_invoice(store, compiled):
    customer(store, receivables="0")
    store.ledger.apply_event("C1", event("P1", "payment_received", "150.00"), "erp")
    store.decisions.decide(order("O1", "1000.00"), ev(compiled), "erp")
    assert position(store) == (D("1000.00"), 0, D("150.00"), D("1000.00"))
    store.ledger.apply_event("C1", event("I1", "invoice_issued", "400.00", "O1"), "erp")
    assert position(store) == (D("600.00"), D("250.00"), 0, D("850.00"))


def test_events_are_idempotent_by_event_id(store, compiled):
    customer(store)
    first = store.ledger.apply_event("C1", event("P1", "payment_received", "100.00"), "erp")
    again = store.ledger.apply_event("C1", event("P1", "payment_received", "100"), "erp")
    assert again["replayed"] is True and again["effect"] == first["effect"]
    assert position(store)[1] == D("19900.00")  # applied once
    with pytest.raises(EventConflict, match="other content"):
        store.ledger.apply_event("C1", event("P1", "payment_received", "100.01"), "erp")
    customer(store, "C2")
    with pytest.raises(EventConflict):
        store.ledger.apply_event("C2", event("P1", "payment_received", "100.00"), "erp")
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ledger_events")).scalar_one() == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"event_id": "X", "type": "payment_received", "amount": D("-1.00"), "currency": "EUR"},
        {"event_id": "X", "type": "payment_received", "amount": D("0"), "currency": "EUR"},
        {"event_id": "X", "type": "payment_received", "amount": 1.5, "currency": "EUR"},
        {"event_id": "X", "type": "payment_received", "amount": D("1.001"), "currency": "EUR"},
        {"event_id": "X", "type": "payment_received", "amount": D("1.00"), "currency": "USD"},
        {"event_id": "X", "type": "payment_received", "amount": D("1.00")},
        {"event_id": "X", "type": "invoice_issued", "amount": D("1.00"), "currency": "EUR"},
        {"event_id": "X", "type": "order_cancelled"},
        {"event_id": "X", "type": "refund", "amount": D("1.00"), "currency": "EUR"},
        {"event_id": "", "type": "payment_received", "amount": D("1.00"), "currency": "EUR"},
    ],
)
def test_bad_events_are_refused(store, bad):
    customer(store)
    with pytest.raises(ValueError):
        store.ledger.apply_event("C1", bad, "erp")
    assert position(store) == (0, D("20000.00"), 0, D("20000.00"))
    assert store.ledger.list_events("C1") == []


def test_concurrent_invoices_move_the_reservation_exactly_once(store, compiled):
    # 20 concurrent invoices of 1,000 against a 10,000 reservation: every invoice counts
    # as a receivable, exactly 10,000 comes off open orders (never below zero) and the
    # other 10,000 is reported as unreserved exposure.
    import threading

    customer(store)
    store.decisions.decide(order("O1", "10000.00"), ev(compiled), "erp")
    results: list[str] = []
    barrier = threading.Barrier(20)

    def run(i):
        barrier.wait()
        try:
            r = store.ledger.apply_event(
                "C1", event(f"I{i}", "invoice_issued", "1000.00", "O1"), "erp"
            )
            results.append(r["effect"].get("unreserved", "0.00"))
        except (ValueError, EventConflict) as e:
            results.append(type(e).__name__)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["0.00"] * 10 + ["1000.00"] * 10
    assert position(store) == (0, D("40000.00"), 0, D("40000.00"))
