"""Reading the decision log (issue 8, part 6): the list and the export filter by order,
kind, reason code and rule as well as customer, outcome and policy version; every keyed read
refuses a query parameter it does not have. Over HTTP, on SQLite and PostgreSQL
(tests/helpers/ledger.py)."""

from __future__ import annotations

import json

import pytest

from api.core.routing import ROUTES
from tests.helpers import ledger
from tests.helpers.ledger import problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
db_url = ledger.db_url
pg_url = ledger.pg_url


@pytest.fixture
def log(api):
    """Five records: SO-1 new (approve), SO-1 repeat, SO-1 amended (approve), SO-2 new
    (refer: over the limit), SO-3 of another customer (approve)."""
    api.customer()  # limit 100,000.00, receivables 20,000.00
    api.customer("CUST-2")
    answers = [
        api.decide(order_id="SO-1", amount="12500.00"),
        api.decide(order_id="SO-1", amount="12500.00"),
        api.decide(order_id="SO-1", amount="13000.00"),
        api.decide(order_id="SO-2", amount="90000.00"),
        api.decide(order_id="SO-3", customer_id="CUST-2", amount="100.00"),
    ]
    assert [r.status_code for r in answers] == [200] * 5, [r.text for r in answers]
    got = [(r.json()["kind"], r.json()["outcome"]) for r in answers]
    assert got == [("new", "approve"), ("repeat", "approve"), ("amended", "approve"),
                   ("new", "refer"), ("new", "approve")]
    assert "REF_OVER_LIMIT" in {x["code"] for x in answers[3].json()["reasons"]}
    return api


def _listed(api, query: str) -> list[tuple[str, str]]:
    r = api.client.get(f"/v1/decisions?{query}", headers=api.h("compliance"))
    assert r.status_code == 200, r.text
    return [(x["order_id"], x["kind"]) for x in r.json()["items"]]


def _exported(api, query: str) -> list[tuple[str, str]]:
    r = api.client.get(f"/v1/decisions/export?{query}", headers=api.h("compliance"))
    assert r.status_code == 200, r.text
    *records, last = [json.loads(line) for line in r.text.splitlines()]
    assert last == {"complete": True, "records": len(records)}
    return [(x["order_id"], x["kind"]) for x in records]


@pytest.mark.parametrize(
    "query, newest_first",
    [
        ("order_id=SO-1", [("SO-1", "amended"), ("SO-1", "repeat"), ("SO-1", "new")]),
        ("kind=new", [("SO-3", "new"), ("SO-2", "new"), ("SO-1", "new")]),
        ("kind=amended", [("SO-1", "amended")]),
        ("order_id=SO-1&kind=repeat", [("SO-1", "repeat")]),
        ("reason_code=REF_OVER_LIMIT", [("SO-2", "new")]),
        ("reason_code=REF_OVER", []),  # a whole code, never a prefix
        ("reason_code=REF%25", []),  # LIKE wildcards are literal
        ("rule_id=REF_OVER_LIMIT", [("SO-2", "new")]),
        ("outcome=refer&customer_id=CUST-1", [("SO-2", "new")]),
        ("customer_id=CUST-2", [("SO-3", "new")]),
        ("order_id=SO-1&customer_id=CUST-2", []),
        ("order_id=NOPE", []),
        # exact and case-sensitive on both databases (SQLite's LIKE ignores case)
        ("reason_code=ref_over_limit", []),
        ("rule_id=ref_over_limit", []),
        ("rule_id=REF_OVER_LIM_T", []),  # _ is no wildcard
    ],
)
def test_the_list_and_the_export_share_their_filters(log, query, newest_first):
    assert _listed(log, query) == newest_first
    assert _exported(log, query) == list(reversed(newest_first))


@pytest.mark.parametrize(
    "query, path",
    [
        ("kind=bogus", "kind"),
        ("kind=NEW", "kind"),
        # an empty filter is refused, never "match nothing"
        ("customer_id=", "customer_id"),
        ("order_id=", "order_id"),
        ("reason_code=", "reason_code"),
        ("policy_version=", "policy_version"),
        # a rule id or reason code is one token: two neighbours in the log never match
        ("rule_id=DEP_COVER_EXCESS%20REF_OVER_LIMIT", "rule_id"),
        ("reason_code=REF_OVER_LIMIT%20SC_X", "reason_code"),
        ("reason_code=X%C2%85Y", "reason_code"),  # U+0085: white space to every regex here
        ("rule_id=X%C2%A0Y", "rule_id"),  # no-break space
    ],
)
def test_a_bad_filter_value_is_refused(log, query, path):
    for url in ("/v1/decisions", "/v1/decisions/export"):
        body = problem(log.client.get(f"{url}?{query}", headers=log.h()), 422)
        assert [e["path"] for e in body["errors"]] == [f"query.{path}"], body


def test_the_policy_filter_takes_the_version_or_its_sha256_or_a_prefix(log):
    sha = log.store.decisions.search(limit=1)[0][0]["policy_sha256"]
    version = log.store.decisions.search(limit=1)[0][0]["policy_version"]
    for value in (version, sha, sha[:12], f"sha256:{sha[:12]}", sha[:12].upper()):
        assert len(_listed(log, f"policy_version={value}")) == 5, value
    for value in (sha[:11], "0" * 12, f"{sha[:12]}x", "2026.01.1"):
        assert _listed(log, f"policy_version={value}") == [], value


def _example_path(path: str) -> str:
    return path.replace("{decision_id}", "nope").replace("{customer_id}", "CUST-1")


@pytest.mark.parametrize(
    "path", [p for m, p, _ in ROUTES if m == "GET"], ids=lambda p: p.strip("/")
)
def test_every_keyed_read_refuses_a_query_parameter_it_does_not_have(log, path):
    """A misspelt filter (``custmer_id``) must not answer, or export, every record."""
    url = _example_path(path) + "?custmer_id=CUST-1&limit=1"
    r = log.client.get(url, headers=log.h("admin"))
    body = problem(r, 422, "invalid_request")
    errors = {e["path"]: e for e in body["errors"]}
    assert "query.custmer_id" in errors, body
    assert errors["query.custmer_id"]["code"] == "unknown_parameter"
    assert "it accepts:" in errors["query.custmer_id"]["message"]
    if path not in ("/v1/decisions", "/v1/customers/{customer_id}/history", "/v1/ledger-events"):
        assert errors["query.limit"]["code"] == "unknown_parameter"  # the lists' only
    else:
        assert "query.limit" not in errors
    if path in ("/v1/decisions", "/v1/ledger-events", "/v1/ledger-events/export"):
        assert "customer_id" in errors["query.custmer_id"]["message"]
    # the key is checked first: without one, 401 whatever the query
    problem(log.client.get(url), 401, "unauthorized")


def test_the_csv_export_has_flat_columns_beside_the_json(log):
    """One row per record with the decision's main fields in columns of their own (score,
    tier, amount, conditions, the reason codes joined) and the full JSON in ``decision``;
    the columns agree with that JSON."""
    import csv
    import io

    from api.decisions.export import EXPORT_COLUMNS

    r = log.client.get(
        "/v1/decisions/export?format=csv&order_id=SO-2", headers=log.h("compliance")
    )
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == list(EXPORT_COLUMNS) and rows[-1] == ["#complete", "1"]
    row = dict(zip(rows[0], rows[1], strict=True))
    decision = json.loads(row["decision"])
    codes = [x["code"] for x in decision["reasons"]]
    assert "REF_OVER_LIMIT" in codes
    assert row["reason_codes"] == " ".join(codes)
    assert (row["outcome"], row["order_amount"], row["currency"]) == ("refer", "90000.00", "EUR")
    assert row["score"] == str(decision["score"]) and row["tier"] == decision["tier"]
    assert row["deposit_amount"] == decision["deposit_amount"]
    assert row["deposit_pct"] == decision["deposit_pct"]
    assert row["approved_payment_term_days"] == str(decision["approved_payment_term_days"])
    assert row["escalation_level"] == decision["escalation"]["level"] != ""
    r = log.client.get(
        "/v1/decisions/export?format=csv&order_id=SO-3", headers=log.h("compliance")
    )
    row = dict(zip(*list(csv.reader(io.StringIO(r.text)))[:2], strict=True))
    assert (row["outcome"], row["escalation_level"]) == ("approve", "")  # no referral
