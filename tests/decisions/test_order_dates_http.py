"""The order-date window: orders dated in the future or too far back are refused; the
windows are settings (SQLite and PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import pytest

from api.core.settings import Settings
from tests.helpers import ledger
from tests.helpers.ledger import Api, _rates, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url


@pytest.mark.dates
def test_http_order_date_window_and_stale_rates(api):
    # the app's clock says 2026-11-29 (UTC); windows are the defaults: 7 days each
    api.customer()
    _rates(api, ("USD", "0.90", "2026-11-10"), ("USD", "0.92", "2026-11-25"))
    # in the future (tomorrow by the app's clock): refused, nothing decided
    b = problem(api.decide(currency="USD", order_date="2026-11-30"), 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("order_date", "order_date_in_future")]
    # older than 7 days: refused, even in the policy currency (no rate shopping by date)
    b = problem(api.decide(order_date="2026-11-21"), 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("order_date", "order_date_too_old")]
    assert "2026-11-22" in b["errors"][0]["message"]  # the oldest date accepted
    assert api.store.decisions.search()[0] == []
    # the edges are accepted: today, and exactly 7 days back
    d = api.decide(order_id="SO-T", currency="USD", amount="100.00", order_date="2026-11-29")
    assert d.status_code == 200, d.text
    assert d.json()["fx"]["rate"] == "0.92" and d.json()["fx"]["rate_as_of"] == "2026-11-25"
    assert d.json()["order_amount"] == "92.00"
    # 2026-11-22: the latest rate on or before it is of 2026-11-10, 12 days older: stale
    b = problem(
        api.decide(order_id="SO-E", currency="USD", order_date="2026-11-22"), 422, "fx_rate_missing"
    )
    assert b["errors"][0]["path"] == "currency"
    assert "2026-11-10" in b["errors"][0]["message"] and "7 days" in b["errors"][0]["message"]
    assert [r["order_id"] for r in api.store.decisions.search()[0]] == ["SO-T"]
    # an order in the policy currency shows no fx
    assert "fx" not in api.decide(order_id="SO-P", amount="10.00").json()


@pytest.mark.dates
def test_http_order_and_rate_windows_are_settings(db_url, monkeypatch):
    monkeypatch.setenv("CREDITGATE_MAX_ORDER_AGE_DAYS", "30")
    assert Settings(database_url=db_url).max_order_age_days == 30
    monkeypatch.delenv("CREDITGATE_MAX_ORDER_AGE_DAYS")
    assert Settings(database_url=db_url).max_order_age_days == 7
    assert Settings(database_url=db_url).max_rate_age_days == 7
    api = Api(db_url, max_order_age_days=30, max_rate_age_days=20)
    try:
        api.customer()
        _rates(api, ("USD", "0.90", "2026-11-10"))
        d = api.decide(currency="USD", amount="100.00", order_date="2026-11-01")
        b = problem(d, 422, "fx_rate_missing")  # inside the order window; no rate before it
        assert "no USD->EUR exchange rate on or before 2026-11-01" in b["detail"]
        d = api.decide(currency="USD", amount="100.00", order_date="2026-11-29")  # 19 days
        assert d.status_code == 200 and d.json()["fx"]["rate_as_of"] == "2026-11-10", d.text
        problem(api.decide(order_id="SO-2", order_date="2026-10-29"), 422, "invalid_request")
    finally:
        api.store.dispose()
