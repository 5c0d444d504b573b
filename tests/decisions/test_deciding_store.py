"""Deciding in the store: repeats and amendments, lists, request facts, unknown customers,
nothing written when evaluation or the transaction fails (SQLite and PostgreSQL;
tests/helpers/stores.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from api.customers.exceptions import UnknownCustomer
from api.decisions.exceptions import OrderConflict
from api.ledger.tables import Reservation
from engine.evaluate import EvaluationError
from tests.helpers import stores
from tests.helpers.stores import PRIME, evaluator, log_count, order, prime_customer, reservations

# pytest fixtures from tests/helpers/stores.py (SQLite and PostgreSQL)
compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store


def test_repeat_and_amendment(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    first, kind = store.decisions.decide(order("O1", "12500.00"), ev, "erp")
    assert (first.outcome, kind) == ("approve", "new")
    again, kind = store.decisions.decide(order("O1", Decimal("12500")), ev, "erp")
    assert kind == "repeat" and again.decision_id == first.decision_id
    assert reservations(store) == {"O1": Decimal("12500.00")}
    assert store.customers.get("C1")["open_orders"] == Decimal("12500.00")

    amended, kind = store.decisions.decide(order("O1", "15000.00"), ev, "erp")
    assert kind == "amended" and amended.outcome == "approve"
    # exposure excludes the order's own previous reservation
    assert amended.exposure_after == Decimal("35000.00")
    assert reservations(store) == {"O1": Decimal("15000.00")}
    assert store.customers.get("C1")["open_orders"] == Decimal("15000.00")

    # amended over the limit: refer, the previous reservation is released
    referred, kind = store.decisions.decide(order("O1", "90000.00"), ev, "erp")
    assert (referred.outcome, kind) == ("refer", "amended")
    assert reservations(store) == {}
    assert store.customers.get("C1")["open_orders"] == 0

    rows, cursor = store.decisions.search(customer_id="C1")
    assert [r["kind"] for r in rows] == ["amended", "amended", "repeat", "new"] and cursor is None
    assert rows[2]["decision"]["decision_id"] == first.decision_id
    assert rows[2]["decision_id"] != first.decision_id
    row = store.decisions.get(first.decision_id)
    assert row["kind"] == "new" and row["outcome"] == "approve" and row["caller"] == "erp"
    assert row["request"]["customer"]["exposure"] == "20000.00"
    assert row["request"]["order"]["id"] == "O1"
    assert store.audit.verify_chain()["ok"]
    with pytest.raises(OrderConflict):
        prime_customer(store, "C2")
        store.decisions.decide(order("O1", "10.00", customer_id="C2"), ev, "erp")


def test_list_decisions_filters_and_pages(store, compiled):
    prime_customer(store)
    prime_customer(store, "C2", limit="1000.00", receivables="0")
    ev = evaluator(compiled)
    for i in range(5):
        store.decisions.decide(order(f"A{i}", "100.00"), ev, "erp")
    store.decisions.decide(order("B1", "1500.00", customer_id="C2"), ev, "erp")
    assert len(store.decisions.search()[0]) == 6
    refs, _ = store.decisions.search(outcome="refer")
    assert [r["order_id"] for r in refs] == ["B1"]
    assert [r["order_id"] for r in store.decisions.search(rule_id="REF_OVER_LIMIT")[0]] == ["B1"]
    assert store.decisions.search(rule_id="REF_OVER")[0] == []
    assert store.decisions.search(rule_id="REF%")[0] == []
    assert len(store.decisions.search(policy_version="2026.11.1")[0]) == 6
    assert len(store.decisions.search(policy_version=compiled.policy.sha256)[0]) == 6
    assert store.decisions.search(policy_version="1999")[0] == []
    created = store.decisions.search()[0][0]["created_at"]
    assert len(store.decisions.search(date_from=created.date())[0]) == 6
    assert store.decisions.search(date_to=created.date().replace(year=2000))[0] == []
    page1, cur = store.decisions.search(customer_id="C1", limit=2)
    page2, cur2 = store.decisions.search(customer_id="C1", limit=2, cursor=cur)
    page3, cur3 = store.decisions.search(customer_id="C1", limit=2, cursor=cur2)
    seqs = [r["seq"] for r in page1 + page2 + page3]
    assert len(seqs) == 5 and seqs == sorted(seqs, reverse=True) and cur3 is None


def test_request_facts_and_currency(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    # a fact the ledger lacks may come with the order ...
    d, _ = store.decisions.decide(
        order("O1", "100.00", facts={"customer.country_risk": "high"}), ev, "x"
    )
    assert d.trail.inputs["customer.country_risk"] == "high"
    # ... but the order may never contradict the ledger (an order-entry caller must not
    # clear a blacklist, a risk class or overdue days)
    for fact in ({"customer.risk_class": "high"}, {"customer.days_past_due": 0}):
        with pytest.raises(ValueError, match="ledger"):
            store.decisions.decide(order("O5", "100.00", facts=fact), ev, "x")
    with pytest.raises(ValueError, match="currency"):
        store.decisions.decide(order("O2", "100.00", currency="USD"), ev, "x")
    with pytest.raises(ValueError, match="ledger"):
        store.decisions.decide(order("O3", "100.00", facts={"customer.exposure": "0"}), ev, "x")
    with pytest.raises(ValueError):
        store.decisions.decide(order("O4", 100.5), ev, "x")  # binary float
    assert log_count(store) == 1


def test_crash_in_evaluation_writes_nothing(store, compiled):
    prime_customer(store)

    def broken(_req):
        raise EvaluationError("internal", "boom")

    with pytest.raises(EvaluationError):
        store.decisions.decide(order("O1", "100.00"), broken, "erp")
    assert reservations(store) == {} and log_count(store) == 0
    assert store.customers.get("C1")["open_orders"] == 0


def test_crash_after_reservation_insert_rolls_back(store, compiled, monkeypatch):
    prime_customer(store)
    ev = evaluator(compiled)
    store.decisions.decide(order("O1", "1000.00"), ev, "erp")
    seen = []
    from api.decisions.deciding import _Batch

    real_head = _Batch.chain_head

    def crash(batch, *args):  # the chain comes last: the reservations are written by then
        s = batch.s
        seen.append({r.order_id: r.amount for r in s.exec(sa.select(Reservation)).scalars()})
        raise RuntimeError("power cut")

    monkeypatch.setattr(_Batch, "chain_head", crash)
    with pytest.raises(RuntimeError):
        store.decisions.decide(order("O2", "2000.00"), ev, "erp")
    with pytest.raises(RuntimeError):  # an amendment: the release is rolled back too
        store.decisions.decide(order("O1", "3000.00"), ev, "erp")
    assert seen == [
        {"O1": Decimal("1000.00"), "O2": Decimal("2000.00")},
        {"O1": Decimal("3000.00")},
    ]
    monkeypatch.setattr(_Batch, "chain_head", real_head)
    assert reservations(store) == {"O1": Decimal("1000.00")}
    assert store.customers.get("C1")["open_orders"] == Decimal("1000.00")
    assert log_count(store) == 1 and store.audit.verify_chain()["ok"]


def test_unknown_customer(store, compiled):
    with pytest.raises(UnknownCustomer):
        store.decisions.decide(
            order("O1", "100.00", customer_id="nobody"), evaluator(compiled), "erp"
        )
    assert log_count(store) == 0


def test_unknown_customer_is_refused_even_with_its_own_credit_facts(store, compiled):
    """Regression (adversarial review): a customer the ledger does not hold, bringing its
    own credit limit and exposure as facts, was approved again and again with nothing
    reserved. It must be refused, and nothing written."""
    facts = {f"customer.{k}": v for k, v in PRIME.items()}
    facts |= {"customer.credit_limit": "5000.00", "customer.exposure": "0"}
    with pytest.raises(UnknownCustomer):
        store.decisions.decide(
            order("O1", "100.00", customer_id="walk-in", facts=facts), evaluator(compiled), "x"
        )
    assert reservations(store) == {} and log_count(store) == 0
