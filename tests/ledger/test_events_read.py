"""Reading the ledger (issue 8, part 6): ``GET /v1/ledger-events`` (newest first, cursor
pagination, exact filters) and ``GET /v1/ledger-events/export`` (oldest first, jsonl / csv,
completeness line, abort), over HTTP on SQLite and PostgreSQL (tests/helpers/ledger.py),
from real sequences of decisions and ledger events, one of them the receivables data
(../shared/data/ar-invoices). The service clock is set by the test, never today's date."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import typing
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.core import chain
from api.ledger.export import EXPORT_COLUMNS
from api.ledger.params import EventType
from api.ledger.persistence import EVENT_TYPES
from api.ledger.tables import LedgerEvent
from tests.helpers import ledger
from tests.helpers.ledger import NOW, Api, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL)
db_url = ledger.db_url
pg_url = ledger.pg_url

AR_CSV = Path(__file__).resolve().parents[3] / "shared/data/ar-invoices/accounts-receivable.csv"
LIST, EXPORT = "/v1/ledger-events", "/v1/ledger-events/export"


class Clock:
    """The service clock, set by the test (``clock.now = ...``)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def clocked(db_url):
    clock = Clock()
    a = Api(db_url, clock=clock)
    a.clock = clock
    yield a
    a.store.dispose()


def ok(r) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()


def listed(api: Api, query: str = "", role: str = "compliance") -> list[dict[str, Any]]:
    """Every page of the list (``limit=2``: the cursor is used), newest first."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = f"{query}&limit=2" + (f"&cursor={cursor}" if cursor is not None else "")
        page = ok(api.client.get(f"{LIST}?{q}", headers=api.h(role)))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def exported(api: Api, query: str = "", role: str = "compliance") -> list[dict[str, Any]]:
    r = api.client.get(f"{EXPORT}?{query}", headers=api.h(role))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    *records, last = [json.loads(line) for line in r.text.splitlines()]
    assert last == {"complete": True, "records": len(records)}
    return records


def exported_csv(api: Api, query: str = "") -> list[list[str]]:
    r = api.client.get(f"{EXPORT}?format=csv&{query}", headers=api.h("compliance"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="ledger-events-' in r.headers["content-disposition"]
    return list(csv.reader(io.StringIO(r.text)))


def post(api: Api, when: datetime, cid: str = "CUST-1", **event: Any) -> dict[str, Any]:
    api.clock.now = when
    if "amount" in event:
        event["currency"] = "EUR"
    return ok(api.event(cid, **event))


def decide(api: Api, when: datetime, order_id: str, amount: str, cid: str, outcome: str) -> None:
    api.clock.now = when
    body = ok(api.decide(order_id=order_id, amount=amount, customer_id=cid))
    assert body["outcome"] == outcome, body["reasons"]


@pytest.fixture
def book(clocked):
    """Two customers (limit 100,000.00, receivables 20,000.00 each), three decisions and
    seven events over three days (seq 1..7):

    1 E-INV-1  11-27 10:00 CUST-1 invoice SO-1 4,000.00 (of 10,000.00 approved)
    2 E-PAY-1  11-28 09:00 CUST-1 payment 2,500.00
    3 E-CN-1   11-28 15:00 CUST-1 credit note 100.00 naming SO-1
    4 E-CXL-1  11-29 08:00 CUST-1 cancel SO-1 (releases the open 6,000.00)
    5 E-INV-2  11-29 09:00 CUST-2 invoice SO-2 5,000.00 (all of it approved)
    6 E-PAY-2  11-29 10:00 CUST-1 payment 30,000.00 (21,400.00 owed: 8,600.00 credit balance)
    7 E-INV-3  11-29 11:00 CUST-2 invoice SO-3 1,000.00 (referred: unreserved)
    """
    api = clocked
    api.clock.now = at("2026-11-27", 9)
    api.customer("CUST-1")
    api.customer("CUST-2")
    decide(api, at("2026-11-27", 9), "SO-1", "10000.00", "CUST-1", "approve")
    decide(api, at("2026-11-27", 9), "SO-2", "5000.00", "CUST-2", "approve")
    decide(api, at("2026-11-27", 9), "SO-3", "90000.00", "CUST-2", "refer")
    post(api, at("2026-11-27", 10), event_id="E-INV-1", type="invoice_issued", order_id="SO-1",
         amount="4000.00")
    post(api, at("2026-11-28", 9), event_id="E-PAY-1", type="payment_received", amount="2500.00")
    post(api, at("2026-11-28", 15), event_id="E-CN-1", type="credit_note", order_id="SO-1",
         amount="100.00")
    post(api, at("2026-11-29", 8), event_id="E-CXL-1", type="order_cancelled", order_id="SO-1")
    post(api, at("2026-11-29", 9), "CUST-2", event_id="E-INV-2", type="invoice_issued",
         order_id="SO-2", amount="5000.00")
    post(api, at("2026-11-29", 10), event_id="E-PAY-2", type="payment_received",
         amount="30000.00")
    post(api, at("2026-11-29", 11), "CUST-2", event_id="E-INV-3", type="invoice_issued",
         order_id="SO-3", amount="1000.00")
    return api


ALL = ["E-INV-3", "E-PAY-2", "E-INV-2", "E-CXL-1", "E-CN-1", "E-PAY-1", "E-INV-1"]
FILTERS = [
    ("", ALL),
    ("customer_id=CUST-1", ["E-PAY-2", "E-CXL-1", "E-CN-1", "E-PAY-1", "E-INV-1"]),
    ("customer_id=CUST-2", ["E-INV-3", "E-INV-2"]),
    ("order_id=SO-1", ["E-CXL-1", "E-CN-1", "E-INV-1"]),  # a credit note naming it too
    ("order_id=SO-3", ["E-INV-3"]),
    ("type=payment_received", ["E-PAY-2", "E-PAY-1"]),
    ("type=invoice_issued&customer_id=CUST-2", ["E-INV-3", "E-INV-2"]),
    ("type=credit_note&customer_id=CUST-2", []),
    ("type=order_cancelled&order_id=SO-1", ["E-CXL-1"]),
    ("event_id=E-CN-1", ["E-CN-1"]),
    ("event_id=E-CN-1&customer_id=CUST-2", []),
    # exact and case-sensitive, never a prefix, no wildcard
    ("event_id=e-cn-1", []),
    ("customer_id=cust-1", []),
    ("order_id=SO", []),
    ("order_id=SO-_", []),
    ("event_id=E-INV-%25", []),
    ("customer_id=NOBODY", []),
    # from inclusive, to exclusive; a plain date is its whole day (UTC)
    ("from=2026-11-28", ALL[:6]),
    ("to=2026-11-28", ["E-CN-1", "E-PAY-1", "E-INV-1"]),
    ("from=2026-11-28&to=2026-11-28", ["E-CN-1", "E-PAY-1"]),
    ("from=2026-11-28T12:00:00Z&to=2026-11-29T09:00:00Z", ["E-CXL-1", "E-CN-1"]),
    ("from=2026-11-28T09:00:00", ALL[:6]),  # no offset: UTC, inclusive
    ("from=2026-11-28T09:00:00.000001Z", ALL[:5]),
    ("from=2026-11-28T10:00:00%2B01:00", ALL[:6]),  # 09:00 UTC
    ("to=2026-11-27T10:00:00Z", []),
    ("from=2026-11-30", []),
    ("from=2026-11-29&customer_id=CUST-2&type=invoice_issued", ["E-INV-3", "E-INV-2"]),
]


def test_every_filter_in_the_list_and_the_export(book):
    """Each filter alone and combined: the list (every page, limit 2) newest first, the
    export (jsonl and csv) the same events oldest first."""
    for query, newest_first in FILTERS:
        assert [x["event_id"] for x in listed(book, query)] == newest_first, query
        assert [x["event_id"] for x in exported(book, query)] == newest_first[::-1], query
        rows = exported_csv(book, query)
        assert [r[1] for r in rows[1:-1]] == newest_first[::-1], query
        assert rows[-1] == ["#complete", str(len(newest_first))], query


def test_the_records_are_the_chain_with_their_effects(book):
    """The records as recorded: amounts, signed effects, callers, the service clock; each
    links to the one before and hashes to its record_hash; the newest is the audit's head."""
    items = {x["event_id"]: x for x in exported(book)}
    pay = items["E-PAY-2"]
    assert {k: pay[k] for k in ("seq", "customer_id", "type", "order_id", "amount",
                                "currency", "created_at", "business_unit")} == {
        "seq": 6, "customer_id": "CUST-1", "type": "payment_received", "order_id": None,
        "amount": "30000.00", "currency": "EUR", "created_at": "2026-11-29T10:00:00.000000+00:00",
        "business_unit": "default",
    }  # fmt: skip
    key_id = hashlib.sha256(book.keys["finance"].encode()).hexdigest()[:12]
    assert pay["caller"] == f"finance:{key_id}"
    assert items["E-INV-1"]["caller"].startswith("order_entry:")
    # 20,000.00 + 4,000.00 - 2,500.00 - 100.00 = 21,400.00 owed; the rest is a credit balance
    assert pay["effect"] == {
        "open_orders": "0.00", "open_receivables": "-21400.00", "credit_balance": "8600.00",
    }  # fmt: skip
    assert items["E-INV-1"]["effect"] == {
        "open_orders": "-4000.00", "open_receivables": "4000.00", "credit_balance": "0.00",
    }  # fmt: skip
    assert items["E-CXL-1"]["effect"] == {
        "open_orders": "-6000.00", "open_receivables": "0.00", "credit_balance": "0.00",
    }  # fmt: skip
    assert items["E-CXL-1"]["amount"] is None and items["E-CXL-1"]["currency"] is None
    assert items["E-INV-3"]["effect"] == {
        "open_orders": "0.00", "open_receivables": "1000.00", "credit_balance": "0.00",
        "unreserved": "1000.00",
    }  # fmt: skip
    records = list(items.values())
    assert [r["seq"] for r in records] == list(range(1, 8))
    prev = "0" * 64
    for r in records:
        assert r["prev_hash"] == prev
        # anyone can re-hash an exported record: its fields without record_hash (and
        # without business_unit when it is the default unit), as canonical JSON
        hashed = {k: v for k, v in r.items() if (k, v) != ("business_unit", "default")}
        assert chain.record_hash(prev, hashed) == r["record_hash"], r["seq"]
        prev = r["record_hash"]
    audit = ok(book.client.get("/v1/audit/verify", headers=book.h("compliance")))
    assert audit["ledger"]["ok"] is True
    assert (audit["ledger"]["head_seq"], audit["ledger"]["head_hash"]) == (7, prev)
    # the list shows exactly what the export shows
    assert listed(book) == records[::-1]


def test_the_csv_export_has_exact_flat_columns(book):
    rows = exported_csv(book, "customer_id=CUST-2")
    assert rows[0] == list(EXPORT_COLUMNS)
    assert rows[0] == [
        "seq", "event_id", "created_at", "customer_id", "order_id", "type", "amount",
        "currency", "effect_open_orders", "effect_open_receivables", "effect_credit_balance",
        "effect_unreserved", "caller", "prev_hash", "record_hash", "record",
    ]  # fmt: skip
    assert rows[-1] == ["#complete", "2"] and len(rows) == 4
    records = exported(book, "customer_id=CUST-2")
    caller = records[0]["caller"]
    assert rows[1][:13] == [
        "5", "E-INV-2", "2026-11-29T09:00:00.000000+00:00", "CUST-2", "SO-2",
        "invoice_issued", "5000.00", "EUR", "-5000.00", "5000.00", "0.00", "", caller,
    ]  # fmt: skip
    assert rows[2][:13] == [
        "7", "E-INV-3", "2026-11-29T11:00:00.000000+00:00", "CUST-2", "SO-3",
        "invoice_issued", "1000.00", "EUR", "0.00", "1000.00", "0.00", "1000.00", caller,
    ]  # fmt: skip
    for row, record in zip(rows[1:3], records, strict=True):
        assert row[13:15] == [record["prev_hash"], record["record_hash"]]
        assert json.loads(row[15]) == record  # the whole record, as the jsonl line
    cancel = exported_csv(book, "type=order_cancelled")[1]
    # no amount: empty cells; a negative move is a number, not text behind an apostrophe
    assert cancel[5:12] == ["order_cancelled", "", "", "-6000.00", "0.00", "0.00", ""]


def test_csv_cells_cannot_run_as_formulas(clocked):
    """Ids the callers chose that a spreadsheet would run: an apostrophe in front in the
    CSV (the jsonl and the list keep them as recorded); a signed amount stays a number."""
    api = clocked
    bad_customer = "=SUM(A1:A2)"
    api.customer(bad_customer, open_receivables="0.00")
    post(api, NOW, bad_customer, event_id='=HYPERLINK("http://evil.example/x")',
         type="invoice_issued", order_id="@SUM(1+1)", amount="50.00")
    post(api, NOW, bad_customer, event_id="-2+3", type="payment_received", amount="80.00",
         order_id="+SO-9")
    rows = exported_csv(api)
    assert [r[1] for r in rows[1:-1]] == ["'=HYPERLINK(\"http://evil.example/x\")", "'-2+3"]
    assert [r[3] for r in rows[1:-1]] == ["'" + bad_customer] * 2
    assert [r[4] for r in rows[1:-1]] == ["'@SUM(1+1)", "'+SO-9"]
    assert rows[2][8:12] == ["0.00", "-50.00", "30.00", ""]  # numbers, never guarded
    assert json.loads(rows[1][15])["event_id"] == '=HYPERLINK("http://evil.example/x")'
    assert [x["event_id"] for x in exported(api)] == ['=HYPERLINK("http://evil.example/x")',
                                                      "-2+3"]
    assert [x["customer_id"] for x in listed(api, "event_id=-2%2B3")] == [bad_customer]


def _ar_actions(n: int) -> list[tuple[date, int, dict[str, str]]]:
    """The first ``n`` invoices of customer 0379-NEVHP in the receivables data, each an
    invoice on its InvoiceDate and a payment on its SettledDate, in date order."""
    with AR_CSV.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["customerID"] == "0379-NEVHP"][:n]
    assert len(rows) == n

    def day(text: str) -> date:
        return datetime.strptime(text, "%m/%d/%Y").date()

    actions = []
    for r in rows:
        amount = str(Decimal(r["InvoiceAmount"]).quantize(Decimal("0.01")))
        number = r["invoiceNumber"]
        actions.append((day(r["InvoiceDate"]), 0, {"invoice": number, "amount": amount}))
        actions.append((day(r["SettledDate"]), 1, {"payment": number, "amount": amount}))
    return sorted(actions, key=lambda a: (a[0], a[1], a[2].get("invoice") or a[2]["payment"]))


def _apply(api: Api, action: tuple[date, int, dict[str, str]]) -> str:
    when, _, what = action
    api.clock.now = datetime.combine(when, datetime.min.time(), tzinfo=UTC).replace(hour=10)
    cid, amount = "0379-NEVHP", what["amount"]
    if "invoice" in what:
        order_id = f"INV-{what['invoice']}"
        assert ok(api.decide(order_id=order_id, amount=amount, customer_id=cid))["outcome"] == (
            "approve"
        )
        event = {"event_id": f"E-{order_id}", "type": "invoice_issued", "order_id": order_id}
    else:
        event = {"event_id": f"PAY-{what['payment']}", "type": "payment_received"}
    ok(api.event(cid, **event, amount=amount, currency="EUR"))
    return event["event_id"]


@pytest.mark.skipif(not AR_CSV.exists(), reason=f"shared data missing: {AR_CSV}")
def test_real_receivables_paged_while_events_are_appended(clocked):
    """Twelve real invoices of one customer, decided, invoiced and paid on their dates (24
    events). Paging through the list (limit 5) while more events are recorded between the
    pages: exactly the events there were at the first page, newest first, no gap and no
    duplicate; the new ones are on top of a new first page. The export and a from/to
    window agree with the data."""
    api = clocked
    api.clock.now = datetime(2012, 1, 1, tzinfo=UTC)
    api.customer("0379-NEVHP", credit_limit="10000.00", open_receivables="0.00")
    actions = _ar_actions(12)
    ids = [_apply(api, a) for a in actions[:14]]
    pending = iter(actions[14:])
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = "customer_id=0379-NEVHP&limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = ok(api.client.get(f"{LIST}?{q}", headers=api.h("finance")))
        seen += page["items"]
        for action in [next(pending, None), next(pending, None)]:
            if action is not None:
                ids.append(_apply(api, action))  # appended between the pages
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [x["seq"] for x in seen] == list(range(14, 0, -1))
    assert [x["event_id"] for x in seen] == ids[:14][::-1]
    assert len(ids) == 20  # 3 pages, two appended after each
    ids += [_apply(api, action) for action in pending]
    assert len(ids) == 24
    first = ok(api.client.get(f"{LIST}?limit=10", headers=api.h("finance")))
    assert [x["event_id"] for x in first["items"]] == ids[-10:][::-1]
    assert first["next_cursor"] == 15
    # the export: every event in date order, the exact amounts of the data, settled
    records = exported(api, "customer_id=0379-NEVHP")
    assert [x["event_id"] for x in records] == ids
    assert [x["amount"] for x in records] == [a[2]["amount"] for a in actions]
    assert [x["created_at"][:10] for x in records] == [a[0].isoformat() for a in actions]
    receivables = sum(Decimal(x["effect"]["open_receivables"]) for x in records)
    orders = sum(Decimal(x["effect"]["open_orders"]) for x in records)
    assert (receivables, orders) == (Decimal("0.00"), Decimal("-" + str(sum(
        Decimal(a[2]["amount"]) for a in actions if "invoice" in a[2]))))
    # a window of the real dates: exactly the actions dated in it
    window = [a for a in actions if date(2013, 1, 1) <= a[0] < date(2013, 3, 1)]
    assert window, "the data has invoices in January and February 2013"
    got = exported(api, "from=2013-01-01&to=2013-02-28")
    assert [x["created_at"][:10] for x in got] == [a[0].isoformat() for a in window]
    assert [x["event_id"] for x in listed(api, "from=2013-01-01&to=2013-02-28")] == [
        x["event_id"] for x in got
    ][::-1]
    payments = exported(api, "type=payment_received&from=2013-01-01&to=2013-02-28")
    assert [x["amount"] for x in payments] == [a[2]["amount"] for a in window if a[1] == 1]


ROLES = ("order_entry", "finance", "reviewer", "compliance", "policy_owner", "admin")


def test_roles(book):
    """The list: who lists decisions (order_entry, reviewer, compliance) and finance; the
    export: compliance (as the decision log's) and finance; admin both; nobody else."""
    readers = {"order_entry", "finance", "reviewer", "compliance", "admin"}
    exporters = {"finance", "compliance", "admin"}
    for role in ROLES:
        r = book.client.get(f"{LIST}?customer_id=CUST-1", headers=book.h(role))
        if role in readers:
            assert len(ok(r)["items"]) == 5, role
        else:
            problem(r, 403, "forbidden")
        for fmt in ("jsonl", "csv"):
            r = book.client.get(f"{EXPORT}?format={fmt}", headers=book.h(role))
            if role in exporters:
                assert r.status_code == 200, (role, r.text)
            else:
                body = problem(r, 403, "forbidden")
                assert "records" not in r.text and "E-INV-1" not in body["detail"]
    for url in (LIST, EXPORT):
        problem(book.client.get(url), 401, "unauthorized")
        problem(book.client.get(url, headers={"Authorization": "Bearer cg_nope"}), 401)


@pytest.mark.parametrize(
    "query, paths",
    [
        ("custmer_id=CUST-1", ["query.custmer_id"]),  # a misspelt filter never lists all
        ("event=E-1", ["query.event"]),
        ("type=bogus", ["query.type"]),
        ("type=PAYMENT_RECEIVED", ["query.type"]),
        ("customer_id=", ["query.customer_id"]),  # empty: refused, never "match none"
        ("event_id=", ["query.event_id"]),
        ("order_id=" + "x" * 201, ["query.order_id"]),
        ("from=29.11.2026", ["query.from"]),
        ("to=2026-02-30", ["query.to"]),
        ("from=0001-01-01T00:00:00%2B05:00", ["query.from"]),
        ("type=credit_note&type=invoice_issued", ["query.type"]),  # given twice
    ],
)
def test_a_bad_query_is_refused(clocked, query, paths):
    for url in (LIST, EXPORT):
        body = problem(clocked.client.get(f"{url}?{query}", headers=clocked.h()), 422)
        assert [e["path"] for e in body["errors"]] == paths, (url, body)


def test_list_and_export_parameters(clocked):
    h = clocked.h()
    for q in ("limit=0", "limit=501", "cursor=-1", "cursor=x"):
        problem(clocked.client.get(f"{LIST}?{q}", headers=h), 422)
    body = problem(clocked.client.get(f"{EXPORT}?limit=5", headers=h), 422)
    assert body["errors"][0]["code"] == "unknown_parameter"  # the export has no pages
    problem(clocked.client.get(f"{EXPORT}?format=xml", headers=h), 422)
    body = problem(clocked.client.get(f"{LIST}?custmer_id=C", headers=h), 422)
    message = body["errors"][0]["message"]
    assert "cursor, customer_id, event_id, from, limit, order_id, to, type" in message
    # nothing recorded yet: an empty page, an export of zero records that is complete
    assert ok(clocked.client.get(LIST, headers=h)) == {"items": [], "next_cursor": None}
    assert exported(clocked) == []
    assert exported_csv(clocked) == [list(EXPORT_COLUMNS), ["#complete", "0"]]
    assert typing.get_args(EventType) == EVENT_TYPES  # the type filter's enum is the ledger's


def _copy_to_unit(url: str, unit: str) -> None:
    """Every ledger event copied into business unit ``unit`` (as another unit's service
    would have recorded them: same ids, same seq)."""
    engine = sa.create_engine(url)
    table = LedgerEvent.__table__
    try:
        with engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
            for r in rows:
                r.update(business_unit=unit, customer_id=f"{r['customer_id']}-{unit}")
            conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def test_reads_are_limited_to_the_business_unit(book, db_url):
    _copy_to_unit(db_url, "other")
    assert [x["event_id"] for x in listed(book)] == ALL
    assert {x["business_unit"] for x in exported(book)} == {"default"}
    assert listed(book, "customer_id=CUST-1-other") == []
    assert exported(book, "event_id=E-PAY-2")[0]["customer_id"] == "CUST-1"


def _edit(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


@pytest.fixture
def unreadable(clocked, db_url):
    """Three payments whose event seq 2 has an effect edited outside the service into a
    JSON value that is not an object (both databases can hold it)."""
    clocked.customer()
    for i in range(1, 4):
        post(clocked, NOW, event_id=f"P-{i}", type="payment_received", amount="10.00")
    _edit(db_url, "UPDATE ledger_events SET effect = '\"hacked\"' WHERE seq = 2")
    return clocked


def test_an_unreadable_event_is_a_problem_on_the_list_and_the_export(unreadable):
    h = unreadable.h("compliance")
    body = problem(unreadable.client.get(LIST, headers=h), 500, "unreadable_record")
    assert "ledger_events seq 2 cannot be read (ValueError: effect is not a JSON object" in (
        body["detail"]
    )
    page = ok(unreadable.client.get(f"{LIST}?cursor=2", headers=h))
    assert [x["seq"] for x in page["items"]] == [1]  # the others still read
    assert [x["event_id"] for x in listed(unreadable, "event_id=P-3")] == ["P-3"]
    for fmt in ("jsonl", "csv"):  # in the first batch: a problem before any byte is sent
        body = problem(unreadable.client.get(f"{EXPORT}?format={fmt}", headers=h), 500,
                       "unreadable_record")
        assert "seq 2" in body["detail"]


def test_an_unreadable_event_mid_export_ends_it_as_incomplete(unreadable, monkeypatch):
    """Past the first batch the status line is sent: the export ends with an explicit
    incomplete line and the connection is aborted (the server error propagates)."""
    from api.ledger.persistence import Ledger

    real = Ledger.iterate
    monkeypatch.setattr(Ledger, "iterate", lambda self, **kw: real(self, **kw, batch=1))
    h = unreadable.h("compliance")
    strict = TestClient(unreadable.app)  # raise_server_exceptions: the abort is visible
    for fmt in ("jsonl", "csv"):
        with pytest.raises(Exception, match="seq 2 cannot be read"):
            strict.get(f"{EXPORT}?format={fmt}", headers=h)
    r = unreadable.client.get(f"{EXPORT}?format=jsonl", headers=h)
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x.get("event_id") for x in lines[:-1]] == ["P-1"]
    assert lines[-1]["complete"] is False and lines[-1]["records"] == 1
    assert "ledger_events seq 2 cannot be read (ValueError: " in lines[-1]["error"]
    rows = list(csv.reader(io.StringIO(
        unreadable.client.get(f"{EXPORT}?format=csv", headers=h).text
    )))
    assert [r[0] for r in rows] == ["seq", "1", "#incomplete"]
    assert rows[-1][1] == "1" and "seq 2 cannot be read" in rows[-1][2]
