"""FX rates and conversion in the store: the latest rate on or before the order date, rates
replaced and validated, money in the order currency (SQLite and PostgreSQL;
tests/helpers/ledger.py)."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from api.fx.exceptions import FxRateMissing
from tests.helpers import ledger
from tests.helpers.ledger import D, customer, ev, order

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
compiled = ledger.compiled
db_url = ledger.db_url
pg_url = ledger.pg_url
store = ledger.store


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
