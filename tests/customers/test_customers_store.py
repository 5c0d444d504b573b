"""A customer record round trip in the store (SQLite and PostgreSQL; tests/helpers/stores.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers import stores
from tests.helpers.stores import prime_customer

# pytest fixtures from tests/helpers/stores.py (SQLite and PostgreSQL)
compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store


def test_customer_round_trip(store):
    c = prime_customer(store)
    assert c["exposure"] == Decimal("20000.00") and c["available_credit"] == Decimal("80000.00")
    got = store.customers.get("C1")
    assert got["credit_limit"] == Decimal("100000.00") and got["open_orders"] == 0
    assert got["facts"] == {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.4"}
    assert store.customers.get("nobody") is None
    with pytest.raises(ValueError):
        store.customers.put("C2", currency="EUR", credit_limit=Decimal("1.001"))
    with pytest.raises(ValueError):
        store.customers.put("C2", currency="EUR", credit_limit=Decimal(1), facts={"x": 0.5})
