"""Reservations under concurrent orders: the credit limit is never exceeded, in the store
(SQLite and PostgreSQL; tests/helpers/stores.py) and over HTTP (SQLite;
tests/helpers/sqlite_api.py)."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

from tests.helpers import sqlite_api, stores
from tests.helpers.sqlite_api import Api
from tests.helpers.stores import (
    evaluator,
    history_head,
    intact,
    last_record,
    log_count,
    order,
    prime_customer,
    reservations,
)

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api
# pytest fixtures from tests/helpers/stores.py (SQLite and PostgreSQL)
compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store


def test_concurrent_orders_never_exceed_the_limit(store, compiled):
    limit, receivables = Decimal("100000.00"), Decimal("20000.00")
    prime_customer(store, limit=str(limit), receivables=str(receivables))
    rng = random.Random(20261129)
    amounts = {f"SO-{i:04d}": Decimal(rng.randint(50000, 150000)) / 100 for i in range(200)}
    results: dict[str, tuple] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(amounts))
    ev = evaluator(compiled)

    def run(oid, amount):
        try:
            start.wait()
            results[oid] = store.decisions.decide(order(oid, str(amount)), ev, "test")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=item) for item in amounts.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(results) == 200 and {k for _, k in results.values()} == {"new"}
    approved = {o: d for o, (d, _) in results.items() if d.outcome == "approve"}
    referred = {o: d for o, (d, _) in results.items() if d.outcome == "refer"}
    assert len(approved) + len(referred) == 200
    assert approved and referred
    assert all("REF_OVER_LIMIT" in {r.rule_id for r in d.reasons} for d in referred.values())

    cust = store.customers.get("C1")
    total = sum(amounts[o] for o in approved)
    assert cust["open_orders"] == total
    assert cust["exposure"] <= limit
    assert reservations(store) == {o: amounts[o] for o in approved}
    # Serialisable: approvals stack one on another (no two saw the same exposure) ...
    steps = sorted(approved.values(), key=lambda d: d.exposure_after)
    before = receivables
    for d in steps:
        assert d.exposure_after == before + d.order_amount
        before = d.exposure_after
    # ... and every referral really did not fit (exposure only grows).
    assert min(amounts[o] for o in referred) > limit - cust["exposure"]
    assert log_count(store) == 200
    head = last_record(store)
    assert head[0] == 200
    assert store.audit.verify_chain() == intact(200, head, history=history_head(store))


def test_concurrent_orders_never_exceed_the_limit_unreferred(api: Api) -> None:
    """Ten orders of 15,000 at once against a 100,000 limit: the ledger is locked per
    decision, so exactly six are approved (90,000) and the rest go over the limit."""
    from concurrent.futures import ThreadPoolExecutor

    api.customer(open_receivables="0.00")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda i: api.decide(order_id=f"SO-{i}", amount="15000.00"), range(10))
        )
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    outcomes = [r.json()["outcome"] for r in results]
    assert outcomes.count("approve") == 6, outcomes
    c = api.store.customers.get("CUST-1")
    assert c["open_orders"] == Decimal("90000.00")
    body = api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()
    assert (body["ok"], body["checked"], body["head_seq"]) == (True, 10, 10)
    assert (body["first_broken_seq"], body["reason"], body["ledger"]["ok"]) == (None, None, True)
