"""FX rates and conversion over HTTP: rates, duplicates, decimals of the order currency,
backdated orders and stale rates (SQLite and PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ledger
from tests.helpers.ledger import _rates, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url


def test_http_fx_rate_far_beyond_the_range_is_422_not_500(api):
    """Found by schemathesis: a whole-number rate of 10^31 broke the decimal check (500);
    it is out of range like any rate from 10^9, as a number or as a string."""
    for rate in (13235240042138383110653672947712, "13235240042138383110653672947712.5"):
        body = {"base": "EUR", "rates": [{"currency": "USD", "rate": rate, "as_of": "2026-11-01"}]}
        b = problem(api.client.put("/v1/fx-rates", headers=api.h(), json=body), 422)
        assert [(e["path"], e["code"]) for e in b["errors"]] == [("rates[0].rate", "out_of_range")]
    assert not api.store.fx.has_rates("EUR", "USD")


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
def test_http_jpy_original_amount_has_no_decimals(api):
    api.customer()
    _rates(api, ("JPY", "0.0061", "2026-11-29"))
    d = api.decide(order_id="SO-J", currency="JPY", amount="150000.00")
    assert d.status_code == 200, d.text
    assert d.json()["fx"]["original_amount"] == "150000"
    assert d.json()["order_amount"] == "915.00"


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
