"""The decide-and-record hot path (issue 7, part 2): statements per decision and per batch,
group commit through the writer, the record's hashed envelope embedding the answered bytes,
floats refused at the input boundary. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import threading
from decimal import Decimal

import orjson
import pytest
import sqlalchemy as sa

from api.decisions import deciding, records
from api.decisions.deciding import DecideJob, decide_batch
from api.decisions.writer import DecisionWriter
from tests.helpers import stores
from tests.helpers.stores import evaluator, order, prime_customer

compiled = stores.compiled
pg_url = stores.pg_url
pg_store = stores.pg_store
sqlite_store = stores.sqlite_store
store = stores.store


@pytest.fixture
def statements(monkeypatch):
    """The SQL statements the batch sends to the driver, in order (``executemany`` is one:
    one round trip with its rows)."""
    sent: list[str] = []
    run, run_many = deciding._Batch._run, deciding._Batch._run_many

    def counted_run(self, sql, params=None):
        sent.append(" ".join(sql.split()[:3]))
        return run(self, sql, params)

    def counted_many(self, sql, rows):
        if rows:
            sent.append(" ".join(sql.split()[:3]))
        return run_many(self, sql, rows)

    monkeypatch.setattr(deciding._Batch, "_run", counted_run)
    monkeypatch.setattr(deciding._Batch, "_run_many", counted_many)
    return sent


LOCK = "SELECT count(pg_advisory_xact_lock(%(ns)s, k))"


def test_one_decision_is_a_handful_of_statements(store, compiled, statements):
    prime_customer(store)
    ev = evaluator(compiled)
    store.decisions.decide(order("O0", "100.00"), ev, "erp")  # the chain's first record
    statements.clear()
    store.decisions.decide(order("O1", "100.00"), ev, "erp")  # approve: reserves
    pg = store.dialect == "postgresql"
    assert statements == [
        "SELECT customer_id, currency,",  # the customer, locked (PostgreSQL FOR UPDATE)
        *([LOCK] if pg else []),  # the order id
        "SELECT 1 AS",  # the order's state: last decision, reservation, ledger events
        "INSERT INTO reservations",
        "UPDATE customers SET",
        "SELECT seq, record_hash",  # the chain head: read once, locked, last
        "INSERT INTO decision_log",
        "UPDATE chain_head SET",
    ]
    statements.clear()
    store.decisions.decide(order("O1", "100.00"), ev, "erp")  # a repeat reserves nothing
    assert statements == [
        "SELECT customer_id, currency,",
        *([LOCK] if pg else []),
        "SELECT 1 AS",
        "SELECT request, decision,",  # the stored decision it answers again
        "SELECT seq, record_hash",
        "INSERT INTO decision_log",
        "UPDATE chain_head SET",
    ]


def test_a_batch_costs_the_statements_of_one_decision(store, compiled, statements):
    """Twelve orders of four customers in one batch: still one statement of each kind (the
    reads take every customer and order at once, the writes are executemany)."""
    for c in range(4):
        prime_customer(store, f"C{c}")
    ev = evaluator(compiled)
    store.decisions.decide(order("X", "1.00", "C0"), ev, "erp")  # the chain's first record
    statements.clear()
    jobs = [DecideJob(order(f"O{i}", "100.00", f"C{i % 4}"), ev, "erp") for i in range(12)]
    results = decide_batch(store.db, jobs)
    assert [r.kind for r in results] == ["new"] * 12
    assert len(statements) == (8 if store.dialect == "postgresql" else 7)
    for c in range(4):
        assert store.customers.get(f"C{c}")["open_orders"] == Decimal("300.00") + (c == 0)
    rows, _ = store.decisions.search(limit=20)
    assert [r["seq"] for r in rows] == list(range(13, 0, -1))
    assert [r["order_id"] for r in reversed(rows)] == ["X"] + [f"O{i}" for i in range(12)]
    assert store.audit.verify_chain()["ok"] is True


def test_a_refused_job_leaves_nothing_and_the_batch_goes_on(store, compiled):
    prime_customer(store)
    ev = evaluator(compiled)
    jobs = [
        DecideJob(order("O1", "100.00"), ev, "erp"),
        DecideJob(order("O2", "100.00", "NOBODY"), ev, "erp"),  # unknown customer
        DecideJob(order("O3", "1.005"), ev, "erp"),  # too many decimals
        DecideJob(order("O1", "200.00"), ev, "erp"),  # the same order amended in the batch
        DecideJob(order("O4", "100.00", facts={"customer.x": 0.5}), ev, "erp"),  # a float
    ]
    results = decide_batch(store.db, jobs)
    assert results[0].kind == "new" and results[3].kind == "amended"
    assert type(results[1]).__name__ == "UnknownCustomer"
    assert "more than 2 decimals" in str(results[2])
    assert "binary float" in str(results[4]) and "facts.customer.x" in str(results[4])
    assert store.customers.get("C1")["open_orders"] == Decimal("200.00")
    assert stores.reservations(store) == {"O1": Decimal("200.00")}
    kinds = [(r["order_id"], r["kind"]) for r in reversed(store.decisions.search()[0])]
    assert kinds == [("O1", "new"), ("O1", "amended")]
    assert store.audit.verify_chain()["ok"] is True


def test_the_record_hashes_an_envelope_of_the_answered_bytes(store, compiled):
    """The record's hash is sha256 of one JSON document built from its columns, the
    decision embedded as the exact bytes answered; recomputed here without the service's
    code."""
    prime_customer(store)
    decided = store.decisions.decide_one(DecideJob(order("O1", "100.00"), evaluator(compiled), "e"))
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM decision_log WHERE seq = 1")).mappings().one()
    assert row["decision"].encode() == decided.body  # stored = answered (minus kind)
    answer = json.loads(decided.response())
    assert answer.pop("kind") == "new" and answer == json.loads(row["decision"])
    created = records.log_dict(_row(store, 1))["created_at"]
    head = {
        "v": 2,
        "business_unit": "default",
        "seq": 1,
        "prev_hash": "0" * 64,
        "decision_id": decided.decision_id,
        "order_id": "O1",
        "customer_id": "C1",
        "outcome": decided.outcome,
        "kind": "new",
        "policy_id": compiled.policy.id,
        "policy_version": compiled.policy.version,
        "policy_sha256": compiled.policy.sha256,
        "content_hash": row["content_hash"],
        "caller": "e",
        "created_at": created.isoformat(timespec="microseconds"),
        "clock": None,
        "rules_matched": row["rules_matched"],
    }
    envelope = (
        orjson.dumps(head)[:-1]
        + b',"fx":null,"request":'
        + row["request"].encode()
        + b',"decision":'
        + row["decision"].encode()
        + b"}"
    )
    assert json.loads(envelope)["decision"]["decision_id"] == decided.decision_id
    assert hashlib.sha256(envelope).hexdigest() == row["record_hash"]
    # an edited byte of the stored answer breaks the chain at that record
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE decision_log SET decision = replace(decision, '\"score\"', '\"Score\"')"
            )
        )
    result = store.audit.verify_chain()
    assert (result["ok"], result["first_broken_seq"]) == (False, 1)
    assert result["reason"] == "record_hash does not match the record's contents"


def _row(store, seq):
    from sqlmodel import Session, select

    from api.decisions.tables import DecisionLog

    with Session(store.engine) as s:
        return s.exec(select(DecisionLog).where(DecisionLog.seq == seq)).one()


def test_concurrent_decisions_share_commits(store, compiled):
    """Forty decisions handed to the writer at once are recorded in fewer transactions than
    decisions (group commit), every one answered after its commit, the chain intact."""
    for c in range(8):
        prime_customer(store, f"C{c}")
    commits: list[int] = []

    def on_commit(conn):
        commits.append(1)

    sa.event.listen(store.engine, "commit", on_commit)
    batches: list[int] = []
    writer = DecisionWriter(store.db, observe=lambda size, seconds: batches.append(size))
    ev = evaluator(compiled)

    async def run():
        jobs = [DecideJob(order(f"O{i}", "10.00", f"C{i % 8}"), ev, "erp") for i in range(40)]
        return await asyncio.gather(*(writer.decide(j) for j in jobs))

    try:
        answers = asyncio.run(run())
    finally:
        writer.close()
        sa.event.remove(store.engine, "commit", on_commit)
    assert [a.kind for a in answers] == ["new"] * 40
    assert sum(batches) == 40 and len(batches) < 40 and len(commits) == len(batches)
    rows, _ = store.decisions.search(limit=100)
    assert sorted(r["decision_id"] for r in rows) == sorted(a.decision_id for a in answers)
    for c in range(8):
        assert store.customers.get(f"C{c}")["open_orders"] == Decimal("50.00")
    assert store.audit.verify_chain()["ok"] is True


def test_a_failed_batch_fails_every_job_and_records_nothing(store, compiled, monkeypatch):
    prime_customer(store)
    writer = DecisionWriter(store.db)
    ev = evaluator(compiled)

    def broken(self, *args):
        raise sa.exc.OperationalError("SELECT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(deciding._Batch, "chain_head", broken)

    async def run():
        jobs = [DecideJob(order(f"O{i}", "10.00"), ev, "erp") for i in range(5)]
        return await asyncio.gather(*(writer.decide(j) for j in jobs), return_exceptions=True)

    try:
        answers = asyncio.run(run())
    finally:
        writer.close()
    assert [type(a).__name__ for a in answers] == ["StoreUnavailable"] * 5
    assert store.decisions.search() == ([], None)
    assert store.customers.get("C1")["open_orders"] == Decimal("0.00")


def test_an_event_loop_that_stops_takes_down_only_its_own_decisions(sqlite_store, compiled):
    """Two event loops of one process decide at once (the test client runs one loop per
    request) while another writer holds the database, and one loop stops during the wait.
    Each loop batches only its own jobs: the other loop's decisions are all answered and
    recorded (a shared queue once let the stopping loop take them down with a 503)."""
    store = sqlite_store  # batches run on the event loop on SQLite only
    prime_customer(store, limit="1000000.00")
    writer = DecisionWriter(store.db)
    try:
        for rnd in range(8):
            answers = _two_loops_one_stops(writer, evaluator(compiled), store.db, f"{rnd}")
            assert [getattr(a, "kind", repr(a)) for a in answers] == ["new"] * 4, rnd
            # nothing of the stopped loop is kept: no job counted as pending for ever (the
            # backlog limit would refuse every decision in the end), no loop held alive
            assert writer._pending == 0, rnd
            gc.collect()
            assert len(writer._loops) == 0, rnd
    finally:
        writer.close()
    rows, _ = store.decisions.search(limit=100)
    assert {f"B{rnd}-{i}" for rnd in range(8) for i in range(4)} <= {r["order_id"] for r in rows}
    assert store.audit.verify_chain()["ok"] is True


def _two_loops_one_stops(writer, ev, db, rnd: str) -> list:
    """Loops A and B (threads) each queue four decisions while the test holds the writer
    lock; A stops while its batch waits; returns B's answers."""
    db._writer_lock.acquire()  # another writer holds the database: drains go to a thread
    queued = threading.Barrier(2)
    a_stopping = threading.Event()
    answers: dict[str, list] = {}

    def run(name: str, stops: bool) -> None:
        async def main() -> None:
            jobs = [DecideJob(order(f"{name}{rnd}-{i}", "1.00"), ev, "erp") for i in range(4)]
            tasks = [asyncio.ensure_future(writer.decide(j)) for j in jobs]
            await asyncio.sleep(0)  # the jobs are queued; this loop's drain not yet run
            queued.wait()  # both loops have queued before either drains
            if stops:
                await asyncio.sleep(0.2)  # its drain waits for the writer on a thread
                more = [DecideJob(order(f"{name}{rnd}-late-{i}", "1.00"), ev, "erp")
                        for i in range(3)]  # queued behind the waiting batch
                tasks += [asyncio.ensure_future(writer.decide(j)) for j in more]
                await asyncio.sleep(0)
                a_stopping.set()
                return  # asyncio.run cancels the waiting decisions and the drain
            answers[name] = await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())

    threads = [threading.Thread(target=run, args=a) for a in (("A", True), ("B", False))]
    for t in threads:
        t.start()
    assert a_stopping.wait(10)
    db._writer_lock.release()
    for t in threads:
        t.join(60)
    return answers["B"]
