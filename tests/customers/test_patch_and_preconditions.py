"""PATCH (JSON Merge Patch) changes only what it names; PUT is conditional (If-Match /
If-None-Match, 428 / 412); the ETag is compared and set under the customer's row lock, so
of two writers holding the same ETag exactly one wins. Over HTTP on SQLite and PostgreSQL
(tests/helpers/ledger.py)."""

from __future__ import annotations

import json
import threading

from tests.helpers import ledger
from tests.helpers.ledger import D, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url

# as the ledger stores PRIME (typed by the policy: years_in_business is a decimal)
PRIME = {"risk_class": "low", "years_in_business": "12", "avg_days_late": "0.4"}
BODY = {
    "currency": "EUR",
    "credit_limit": "50000.00",
    "open_receivables": "1200.00",
    "days_past_due": 5,
    "facts": {**PRIME, "blacklisted": True, "country_risk": "high"},
}


def _create(api, cid="C1", body=BODY):
    r = api.client.put(f"/v1/customers/{cid}", headers=api.h(**{"If-None-Match": "*"}), json=body)
    assert r.status_code == 200, r.text
    return r


def _get(api, cid="C1"):
    r = api.client.get(f"/v1/customers/{cid}", headers=api.h())
    assert r.status_code == 200, r.text
    return r.json(), r.headers["ETag"]


def _patch(api, body, cid="C1", **headers):
    return api.client.patch(f"/v1/customers/{cid}", headers=api.h(**headers), json=body)


def test_patch_changes_only_the_fields_it_names(api):
    created = _create(api)
    before, tag = _get(api)
    assert created.headers["ETag"] == tag and tag.startswith('"') and len(tag) == 34
    r = _patch(api, {"credit_limit": "60000.00"})
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["credit_limit"] == "60000.00" and after["available_credit"] == "58800.00"
    # everything not named is as it was: the blacklist, the other facts, the AR figures
    assert after["facts"] == before["facts"] == {
        **PRIME, "blacklisted": True, "country_risk": "high"
    }
    assert (after["open_receivables"], after["days_past_due"]) == ("1200.00", 5)
    assert r.headers["ETag"] != tag and _get(api) == (after, r.headers["ETag"])
    # merge-patch media type; a fact named is set, the others kept
    r = api.client.patch(
        "/v1/customers/C1",
        headers=api.h(**{"Content-Type": "application/merge-patch+json"}),
        content=json.dumps({"facts": {"risk_class": "medium"}}).encode(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["facts"] == {**PRIME, "risk_class": "medium", "blacklisted": True,
                                 "country_risk": "high"}
    # a patch that changes nothing leaves the record and its ETag as they were
    unchanged = _patch(api, {"credit_limit": "60000.00", "facts": {"risk_class": "medium"}})
    assert unchanged.status_code == 200 and unchanged.headers["ETag"] == r.headers["ETag"]
    assert unchanged.json()["updated_at"] == r.json()["updated_at"]


def test_a_blacklist_is_lifted_only_by_an_explicit_value(api):
    _create(api)
    for body in ({"credit_limit": "70000.00"}, {"facts": {}}, {"facts": {"risk_class": "low"}},
                 {"days_past_due": 0}):
        r = _patch(api, body)
        assert r.status_code == 200, r.text
        assert r.json()["facts"]["blacklisted"] is True, body
    # a decision still sees the blacklist
    assert api.decide(customer_id="C1", amount="10.00").json()["outcome"] == "decline"
    r = _patch(api, {"facts": {"blacklisted": False}})
    assert r.status_code == 200 and r.json()["facts"]["blacklisted"] is False
    assert _patch(api, {"facts": {"blacklisted": True}}).json()["facts"]["blacklisted"] is True
    # null removes the fact (the policy default, false, applies)
    r = _patch(api, {"facts": {"customer.blacklisted": None, "country_risk": None}})
    assert r.status_code == 200, r.text
    assert r.json()["facts"] == PRIME


def test_patch_refusals_change_nothing(api):
    _create(api)
    before = _get(api)
    cases = [
        ({"credit_limit": None, "currency": None}, [("currency", "null_value"),
                                                     ("credit_limit", "null_value")]),
        ({"facts": None}, [("facts", "null_value")]),
        ({"open_receivables": None}, [("open_receivables", "null_value")]),
        ({"open_orders": "0.00"}, [("open_orders", "unknown_field")]),
        ({"reasn": "typo"}, [("reasn", "unknown_field")]),
        ({"facts": {"risk_clas": "low"}}, [("facts.risk_clas", "unknown_fact")]),
        ({"facts": {"credit_limit": "1.00"}}, [("facts.credit_limit", "ledger_field")]),
        ({"facts": {"risk_class": "low", "customer.risk_class": None}},
         [("facts.customer.risk_class", "duplicate_fact")]),
        ({"facts": {"risk_class": "excellent"}}, [("facts.risk_class", "invalid_value")]),
        ({"currency": "USD"}, [("currency", "currency_mismatch")]),
        ({"credit_limit": "-1.00"}, [("credit_limit", "below_min")]),
        ({"credit_limit": "1.001"}, [("credit_limit", "too_many_decimals")]),
    ]
    for body, errors in cases:
        b = problem(_patch(api, body), 422, "invalid_request")
        assert [(e["path"], e["code"]) for e in b["errors"]] == errors, (body, b)
    problem(
        api.client.patch("/v1/customers/C1", headers=api.h(**{"Content-Type": "text/plain"}),
                         content=b'{"credit_limit": "1.00"}'),
        415, "unsupported_media_type",
    )
    problem(_patch(api, {"credit_limit": "1.00"}, cid="NOBODY"), 404, "unknown_customer")
    assert _get(api) == before


def test_put_needs_a_precondition(api):
    r = api.client.put("/v1/customers/C1", headers=api.h(), json=BODY)
    b = problem(r, 428, "precondition_required")
    assert "If-Match" in b["detail"] and "If-None-Match: *" in b["detail"]
    assert api.store.customers.get("C1") is None
    # If-Match names a record that does not exist: 412, nothing created
    problem(api.client.put("/v1/customers/C1", headers=api.h(**{"If-Match": "*"}), json=BODY),
            412, "precondition_failed")
    assert api.store.customers.get("C1") is None
    first = _create(api)
    assert first.json()["credit_limit"] == "50000.00"
    # creating again: 412, the stored customer untouched
    again = {**BODY, "credit_limit": "1.00", "facts": {}}
    r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-None-Match": "*"}), json=again)
    problem(r, 412, "precondition_failed")
    before, tag = _get(api)
    assert before["credit_limit"] == "50000.00" and before["facts"]["blacklisted"] is True
    # a stale ETag: 412 and nothing changed
    assert _patch(api, {"credit_limit": "55000.00"}).status_code == 200
    current, new_tag = _get(api)
    r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-Match": tag}), json=again)
    b = problem(r, 412, "precondition_failed")
    assert new_tag in b["detail"]
    assert _get(api) == (current, new_tag)
    # a weak tag never matches If-Match (strong comparison); a malformed one is 422
    r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-Match": f"W/{new_tag}"}),
                       json=again)
    problem(r, 412, "precondition_failed")
    r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-Match": "abc"}), json=again)
    b = problem(r, 422, "invalid_request")
    assert b["errors"][0]["path"] == "header.If-Match"
    # replacing needs the facts as a whole: leaving them out never drops the blacklist
    no_facts = {"currency": "EUR", "credit_limit": "1.00"}
    r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-Match": new_tag}), json=no_facts)
    b = problem(r, 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in b["errors"]] == [("facts", "missing")]
    assert _get(api) == (current, new_tag)
    # the current ETag (one of a list) replaces the record: facts as sent, AR figures kept
    r = api.client.put(
        "/v1/customers/C1", headers=api.h(**{"If-Match": f'"0000", {new_tag}'}), json=again
    )
    assert r.status_code == 200, r.text
    assert (r.json()["credit_limit"], r.json()["facts"]) == ("1.00", {})
    assert (r.json()["open_receivables"], r.json()["days_past_due"]) == ("1200.00", 5)
    assert r.headers["ETag"] not in (tag, new_tag) and _get(api)[1] == r.headers["ETag"]
    # If-Match: * replaces whatever is stored
    r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-Match": "*"}), json=BODY)
    assert r.status_code == 200 and r.json()["facts"]["blacklisted"] is True


def test_patch_honours_if_match(api):
    _create(api)
    _, tag = _get(api)
    r = _patch(api, {"credit_limit": "1000.00"}, **{"If-Match": tag})
    assert r.status_code == 200, r.text
    stale = _patch(api, {"facts": {"blacklisted": False}}, **{"If-Match": tag})
    problem(stale, 412, "precondition_failed")
    # an invalid patch is 422 whatever its precondition (checked before it)
    bad = problem(_patch(api, {"days_past_due": -1}, **{"If-Match": tag}), 422)
    assert [(e["path"], e["code"]) for e in bad["errors"]] == [("days_past_due", "below_min")]
    now, now_tag = _get(api)
    assert now["facts"]["blacklisted"] is True and now_tag == r.headers["ETag"]
    ok = _patch(api, {"facts": {"blacklisted": False}}, **{"If-Match": now_tag})
    assert ok.status_code == 200 and ok.json()["facts"]["blacklisted"] is False


def test_the_etag_covers_what_a_put_can_overwrite(api):
    _create(api, body={**BODY, "facts": PRIME})
    _, tag = _get(api)
    # a decision reserves (open orders): no PUT or PATCH writes those, the ETag stays
    assert api.decide(customer_id="C1", amount="100.00").json()["outcome"] == "approve"
    assert _get(api)[1] == tag
    # a payment moves the receivables a PUT could overwrite: the ETag changes
    r = api.event("C1", event_id="P1", type="payment_received", amount="200.00", currency="EUR")
    assert r.status_code == 200, r.text
    c, moved = _get(api)
    assert c["open_receivables"] == "1000.00" and moved != tag
    r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-Match": tag}), json=BODY)
    problem(r, 412, "precondition_failed")
    assert _get(api) == (c, moved)


def _race(api, send) -> list[int]:
    """Two threads send at once (``send(i)`` returns a status)."""
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def run(i: int) -> None:
        barrier.wait()
        statuses.append(send(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(statuses)


def test_two_concurrent_updates_with_the_same_etag_exactly_one_wins(api):
    _create(api)
    for round_ in range(4):
        _, tag = _get(api)
        limits = [f"{round_ + 1}1000.00", f"{round_ + 1}2000.00"]
        won: list[str] = []

        def send(i: int, round_=round_, limits=limits, tag=tag, won=won) -> int:
            if round_ % 2:  # PATCH with If-Match
                r = _patch(api, {"credit_limit": limits[i]}, **{"If-Match": tag})
            else:  # PUT with If-Match
                body = {**BODY, "credit_limit": limits[i]}
                r = api.client.put("/v1/customers/C1", headers=api.h(**{"If-Match": tag}),
                                   json=body)
            if r.status_code == 200:
                won.append(limits[i])
            return r.status_code

        assert _race(api, send) == [200, 412], round_
        c, _ = _get(api)
        assert [c["credit_limit"]] == won  # the winner's value, never lost or mixed


def test_the_etag_is_compared_under_the_row_lock(api):
    """A writer holding the row lock with the same ETag: the second writer waits for it and
    then fails its precondition (a compare before the lock would let both through)."""
    from api.customers.conditions import Preconditions
    from api.customers.exceptions import PreconditionFailed

    _create(api)
    _, tag = _get(api)
    customers = api.store.customers
    inside, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def slow_build(current):
        inside.set()  # the first writer holds the row lock now
        assert release.wait(30)
        return {**current, "credit_limit": D("11.00"), "facts": None,
                "open_receivables": None, "days_past_due": None}

    def first() -> None:
        customers.write("C1", slow_build, conditions=Preconditions.of(tag, None))
        outcome["first"] = "ok"

    def second() -> None:
        try:
            customers.write(
                "C1",
                lambda current: {**current, "credit_limit": D("22.00"), "facts": None,
                                 "open_receivables": None, "days_past_due": None},
                conditions=Preconditions.of(tag, None),
            )
            outcome["second"] = "ok"
        except PreconditionFailed:
            outcome["second"] = "412"

    t1 = threading.Thread(target=first)
    t1.start()
    assert inside.wait(30)
    t2 = threading.Thread(target=second)
    t2.start()
    t2.join(0.5)
    assert t2.is_alive()  # waiting for the row (or writer) lock, not deciding on its own
    release.set()
    t1.join(30)
    t2.join(30)
    assert outcome == {"first": "ok", "second": "412"}
    assert api.store.customers.get("C1")["credit_limit"] == D("11.00")


# -- found by the adversarial review of 2026-12-07 ------------------------------------------


def test_the_answers_etag_is_the_stored_records_whatever_the_money_spelling(api):
    """"7", 7 and "7.00" are one credit limit: the PUT / PATCH answer, its ETag and the
    history show what GET shows, and that ETag is good for the next If-Match."""
    created = _create(api, body={**BODY, "credit_limit": "9"})
    assert created.json()["credit_limit"] == "9.00"
    assert created.headers["ETag"] == _get(api)[1]
    for limit in ("7", 8):
        r = _patch(api, {"credit_limit": limit})
        assert r.status_code == 200, r.text
        assert r.json()["credit_limit"] == f"{limit}.00"
        got, tag = _get(api)
        assert r.headers["ETag"] == tag and got == r.json()
        r = _patch(api, {"days_past_due": 3 if limit == "7" else 4}, **{"If-Match": tag})
        assert r.status_code == 200, r.text
    same = _patch(api, {"credit_limit": "8.00"})  # the same value: nothing changes
    assert same.headers["ETag"] == _get(api)[1]
    history = api.client.get("/v1/customers/C1/history", headers=api.h()).json()["items"]
    limits = [i["changes"]["credit_limit"] for i in history if "credit_limit" in i["changes"]]
    assert limits == [{"old": "7.00", "new": "8.00"}, {"old": "9.00", "new": "7.00"},
                      {"old": None, "new": "9.00"}]


def test_an_equal_decimal_fact_is_no_change(api):
    _create(api)
    _, tag = _get(api)
    r = _patch(api, {"facts": {"years_in_business": "12.000", "avg_days_late": "0.40"}})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == tag
    assert r.json()["facts"]["years_in_business"] == "12"
    history = api.client.get("/v1/customers/C1/history", headers=api.h()).json()["items"]
    assert len(history) == 1  # the creation only
    r = _patch(api, {"facts": {"avg_days_late": "0.50"}})
    assert r.json()["facts"]["avg_days_late"] == "0.5"


def test_receivables_and_open_orders_stay_below_what_a_decision_can_read(api):
    _create(api, body={**BODY, "credit_limit": "999999999999999.99", "open_receivables": "0",
                       "facts": PRIME, "days_past_due": 0})
    d = api.decide(order_id="A1", customer_id="C1", amount="100.00")
    assert d.status_code == 200 and d.json()["outcome"] == "approve", d.text
    _, tag = _get(api)
    r = _patch(api, {"open_receivables": "999999999999999.99"})
    body = problem(r, 422, "invalid_request")
    assert body["errors"][0]["path"] == "open_receivables", body
    assert "10^15" in body["errors"][0]["message"]
    assert _get(api)[1] == tag  # nothing changed
    r = _patch(api, {"open_receivables": "999999999999899.99"})  # just below, with 100.00
    assert r.status_code == 200, r.text
    assert r.json()["exposure"] == "999999999999999.99"
