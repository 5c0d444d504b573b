"""``creditgate audit anchor --to FILE`` and ``creditgate audit verify --anchors FILE``: the
chain heads appended to a hash-chained file outside the database, and the chains checked
against it (SQLite and PostgreSQL; tests/helpers/stores.py). The clock is fixed through the
service's clock setting, so no test depends on today's date."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli import app
from api.core import chain
from tests.helpers import stores
from tests.helpers.stores import evaluator, last_record, order, prime_customer

compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store

CLOCK = "2026-11-29T10:00:00Z"


def cli(monkeypatch, url, *args):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", url)
    monkeypatch.setenv("CREDITGATE_MODE", "test")
    monkeypatch.setenv("CREDITGATE_CLOCK", CLOCK)
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def run(store, monkeypatch):
    url = store.engine.url.render_as_string(hide_password=False)
    return lambda *args: cli(monkeypatch, url, *args)


def decide(store, compiled, *order_ids):
    ev = evaluator(compiled)
    for oid in order_ids:
        store.decisions.decide(order(oid, "100.00"), ev, "erp")


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def cover_up(store, keep):
    """Delete the decision log's records after seq ``keep`` with every trace in the
    position (their reservations, the customer's open orders) and rewrite the chain head to
    seq ``keep``: what someone with write access to the database would do."""
    with store.engine.begin() as conn:
        gone = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT order_id FROM decision_log WHERE seq > :k"), {"k": keep}
            )
        ]
        for oid in gone:
            conn.execute(sa.text("DELETE FROM reservations WHERE order_id = :o"), {"o": oid})
        conn.execute(sa.text("DELETE FROM decision_log WHERE seq > :k"), {"k": keep})
        (h,) = conn.execute(
            sa.text("SELECT record_hash FROM decision_log WHERE seq = :k"), {"k": keep}
        ).one()
        conn.execute(
            sa.text("UPDATE chain_head SET seq = :k, record_hash = :h WHERE name = 'decision_log'"),
            {"k": keep, "h": h},
        )
        v = Decimal("100.00") * keep
        conn.execute(sa.text(f"UPDATE customers SET open_orders = {v} WHERE customer_id = 'C1'"))


def test_anchor_appends_one_hash_chained_line_per_chain(store, compiled, run, tmp_path):
    prime_customer(store)
    decide(store, compiled, "O1", "O2", "O3")
    path = tmp_path / "anchors.jsonl"
    r = run("audit", "anchor", "--to", path)
    assert r.exit_code == 0, r.output
    seq, head = last_record(store)
    assert r.stdout.splitlines()[0] == (
        f"anchored: decision log: head seq {seq} record_hash {head} to {path}"
    )
    decide(store, compiled, "O4")
    assert run("audit", "anchor", "--to", path).exit_code == 0
    got = lines(path)
    assert [(g["chain"], g["head_seq"]) for g in got] == [
        ("decision_log", 3),
        ("ledger_events", got[1]["head_seq"]),
        ("customer_history", got[2]["head_seq"]),
        ("decision_log", 4),
        ("ledger_events", got[4]["head_seq"]),
        ("customer_history", got[5]["head_seq"]),
    ]
    assert got[0]["head_hash"] == head and got[3]["head_hash"] == last_record(store)[1]
    prev = chain.GENESIS
    for g in got:  # the file is a hash chain of its own, with the service clock's time
        assert g["prev_hash"] == prev and chain.record_hash(prev, g) == g["record_hash"]
        assert g["anchored_at"] == "2026-11-29T10:00:00.000000+00:00"
        assert g["business_unit"] == "default"
        prev = g["record_hash"]
    r = run("audit", "verify", "--anchors", path)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1].startswith(
        f"ok: anchors: {path}: 6 lines, the file's own hash chain intact; every anchored head "
        "is in its chain (customer history up to seq 1, decision log up to seq 4"
    )


def test_log_cut_back_with_rewritten_head_falls_short_of_the_anchor(
    store, compiled, run, tmp_path
):
    prime_customer(store)
    decide(store, compiled, "O1", "O2", "O3", "O4", "O5")
    path = tmp_path / "anchors.jsonl"
    assert run("audit", "anchor", "--to", path).exit_code == 0
    cover_up(store, 3)
    # Without the anchors the cover-up is invisible: chains and position agree with each other
    assert store.audit.verify_chain()["ok"] is True
    r = run("audit", "verify")
    assert r.exit_code == 0, r.output
    r = run("audit", "verify", "--anchors", path)
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines() == [
        "BROKEN: decision log falls short of anchor 1: seq 5 missing (anchored "
        f"2026-11-29T10:00:00.000000+00:00; {path} line 1)"
    ]
    # New decisions chain onto the rewritten head: seq 5 exists again, with another hash
    decide(store, compiled, "O6", "O7")
    assert run("audit", "verify").exit_code == 0
    r = run("audit", "verify", "--anchors", path)
    assert r.exit_code == 1
    assert "BROKEN: decision log falls short of anchor 1: seq 5 has another hash" in r.stderr


def test_whole_log_deleted_with_its_head_falls_short(store, compiled, run, tmp_path):
    prime_customer(store)
    decide(store, compiled, "O1", "O2")
    path = tmp_path / "anchors.jsonl"
    assert run("audit", "anchor", "--to", path).exit_code == 0
    assert run("audit", "anchor", "--to", path).exit_code == 0
    with store.engine.begin() as conn:
        for t in ("reservations", "decision_log"):
            conn.execute(sa.text(f"DELETE FROM {t}"))
        conn.execute(sa.text("DELETE FROM chain_head WHERE name = 'decision_log'"))
        conn.execute(sa.text("UPDATE customers SET open_orders = 0"))
    r = run("audit", "verify", "--anchors", path)
    assert r.exit_code == 1, r.output
    shortfalls = [x for x in r.stderr.splitlines() if "falls short" in x]
    assert [x.split(" (")[0] for x in shortfalls] == [
        "BROKEN: decision log falls short of anchor 1: seq 2 missing",
        "BROKEN: decision log falls short of anchor 4: seq 2 missing",
    ]


def test_a_chain_grown_after_the_anchor_is_ok(store, compiled, run, tmp_path):
    prime_customer(store)
    path = tmp_path / "anchors.jsonl"
    assert run("audit", "anchor", "--to", path).exit_code == 0  # decision log still empty
    decide(store, compiled, "O1", "O2")
    assert run("audit", "anchor", "--to", path).exit_code == 0
    decide(store, compiled, "O3", "O4", "O5")
    r = run("audit", "verify", "--anchors", path)
    assert r.exit_code == 0, r.output
    assert "decision log up to seq 2" in r.stdout.splitlines()[-1]


def test_an_edited_anchor_file_is_reported(store, compiled, run, tmp_path):
    prime_customer(store)
    decide(store, compiled, "O1", "O2")
    path = tmp_path / "anchors.jsonl"
    for _ in range(3):
        assert run("audit", "anchor", "--to", path).exit_code == 0
    text = path.read_text().splitlines(keepends=True)
    edited = json.loads(text[3])
    edited["head_seq"] = 1  # an anchor moved back (to hide records after seq 1)
    text[3] = json.dumps(edited) + "\n"
    del text[7]  # a line removed
    path.write_text("".join(text))
    r = run("audit", "verify", "--anchors", path)
    assert r.exit_code == 1, r.output
    assert r.stderr.splitlines() == [
        f"BROKEN: anchor file {path}: line 4: its record_hash does not match its contents "
        "(edited)",
        f"BROKEN: anchor file {path}: line 8: prev_hash does not match the previous line's "
        "record_hash (a line was removed, inserted or edited before it)",
    ]
    path.write_text("".join(text) + "not json\n")
    r = run("audit", "verify", "--anchors", path)
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1].startswith(
        f"BROKEN: anchor file {path}: line 9: not an anchor ("
    )
    # appending refuses to chain onto a line that is no anchor (and onto a cut last line)
    r = run("audit", "anchor", "--to", path)
    assert r.exit_code == 1 and "its last line is not an anchor" in r.stderr
    path.write_text("".join(text)[:-5])
    r = run("audit", "anchor", "--to", path)
    assert r.exit_code == 1 and "its last line is incomplete" in r.stderr
    assert path.read_text() == "".join(text)[:-5]


def test_anchor_refuses_a_broken_chain(store, compiled, run, tmp_path):
    prime_customer(store)
    decide(store, compiled, "O1", "O2")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE decision_log SET caller = 'mallory' WHERE seq = 2"))
    path = tmp_path / "anchors.jsonl"
    r = run("audit", "anchor", "--to", path)
    assert r.exit_code == 1
    assert r.stderr.startswith("creditgate: decision log at seq 2: record_hash")
    assert "nothing was anchored" in r.stderr and not path.exists()


def test_unreadable_anchor_file_exits_2(store, run, tmp_path):
    r = run("audit", "verify", "--anchors", tmp_path / "nope.jsonl")
    assert r.exit_code == 2 and "cannot read the anchor file" in r.stderr
    r = run("audit", "anchor", "--to", tmp_path / "no-such-dir" / "a.jsonl")
    assert r.exit_code == 2 and "cannot append to the anchor file" in r.stderr


@pytest.mark.parametrize(
    "url",
    ["sqlite:///{tmp}/missing.db", "postgresql+psycopg://postgres@127.0.0.1:1/creditgate"],
)
def test_unavailable_database_exits_3(url, monkeypatch, tmp_path):
    url = url.format(tmp=tmp_path)
    path = tmp_path / "anchors.jsonl"
    r = cli(monkeypatch, url, "audit", "anchor", "--to", path)
    assert r.exit_code == 3, r.output
    assert not path.exists()
    path.write_text("")
    r = cli(monkeypatch, url, "audit", "verify", "--anchors", path)
    assert r.exit_code == 3, r.output
