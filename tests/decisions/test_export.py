"""The decision export: reading the log in batches, the completeness line, CSV cells that
cannot run as formulas (SQLite and PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import csv
import io

import pytest

from tests.helpers import ledger
from tests.helpers.ledger import _jsonl, customer, ev, order

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
api = ledger.api
compiled = ledger.compiled
db_url = ledger.db_url
pg_url = ledger.pg_url
store = ledger.store


@pytest.mark.dates
def test_iter_decisions_reads_in_batches(store, compiled):
    customer(store)
    for i in range(7):
        store.decisions.decide(order(f"O{i}", "10.00"), ev(compiled), "erp")
    rows = list(store.decisions.iterate(batch=3))
    assert [r["seq"] for r in rows] == list(range(1, 8))
    assert list(store.decisions.iterate(customer_id="nobody")) == []


@pytest.mark.dates
def test_export_ends_with_a_completeness_line(api):
    api.customer()
    h = api.h("compliance")
    assert _jsonl(api.client.get("/v1/decisions/export", headers=h)) == [
        {"complete": True, "records": 0}
    ]
    for i in range(3):
        assert api.decide(order_id=f"SO-{i}", amount="100.00").status_code == 200
    lines = _jsonl(api.client.get("/v1/decisions/export?format=jsonl", headers=h))
    assert [x.get("order_id") for x in lines[:-1]] == ["SO-0", "SO-1", "SO-2"]
    assert lines[-1] == {"complete": True, "records": 3}
    r = api.client.get("/v1/decisions/export?format=csv", headers=h)
    rows = list(csv.reader(io.StringIO(r.text)))
    assert [r[3] for r in rows[1:-1]] == ["SO-0", "SO-1", "SO-2"]
    assert rows[-1] == ["#complete", "3"]
    lines = _jsonl(api.client.get("/v1/decisions/export?customer_id=nobody", headers=h))
    assert lines == [{"complete": True, "records": 0}]


def test_csv_export_cells_cannot_run_as_formulas():
    from api.decisions.export import csv_cell as _csv_cell

    assert _csv_cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert _csv_cell("@SUM(1+1)") == "'@SUM(1+1)"
    assert _csv_cell("-2+3") == "'-2+3"
    assert _csv_cell("SO-1") == "SO-1" and _csv_cell(5) == 5
