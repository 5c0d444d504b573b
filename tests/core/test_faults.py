"""Fault tests against a live server (``creditgate serve`` in a subprocess):

- the PostgreSQL database is lost mid-load (a PRIVATE server started with initdb/pg_ctl on a
  free port, stopped with ``pg_ctl stop -m immediate`` — never the machine's shared server):
  the service answers 503 problem+json, never an approve, records nothing partial, and
  decides again once the database is back;
- the server process is killed (SIGKILL) at random moments under load on SQLite, so some
  kills land between evaluation and commit: after every crash the ledger and the log agree
  (a reservation exactly for the orders whose latest decision is an approve, exposure equal
  to the sum of reservations), every answered decision is recorded, and the chain verifies.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from api.store import Store
from tests.pgserver import LiveServer, PrivatePostgres

PROBLEM = "application/problem+json"
PRIME = {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.4"}


# --------------------------------------------------------------------------- helpers


@dataclass
class Sent:
    order_id: str
    body: dict[str, Any]
    t_send: float
    t_recv: float = 0.0
    status: int | None = None  # None: no HTTP answer (connection error)
    ctype: str = ""
    json: Any = None
    error: str = ""


@dataclass
class Load:
    """Client threads posting orders until stopped; every request is kept in ``sent``."""

    base: str
    key: str
    customers: list[str]
    threads: int = 4
    amend_share: float = 0.0
    repeat_share: float = 0.0
    seed: int = 0
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def start(self) -> Load:
        self._stop.clear()
        self._workers = [
            threading.Thread(target=self._work, args=(k,), daemon=True) for k in range(self.threads)
        ]
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(60)
        assert not any(t.is_alive() for t in self._workers), "a client thread hangs"

    def ok_count(self) -> int:
        with self._lock:
            return sum(s.status == 200 for s in self.sent)

    def _work(self, k: int) -> None:
        rng = random.Random(self.seed * 1000 + k)
        mine: list[dict[str, Any]] = []
        with httpx.Client(
            base_url=self.base, timeout=30, headers={"Authorization": f"Bearer {self.key}"}
        ) as c:
            while not self._stop.is_set():
                r = rng.random()
                if mine and r < self.amend_share:
                    body = {**rng.choice(mine)}
                    body["amount"] = f"{rng.randint(100, 5000)}.{rng.randint(0, 99):02d}"
                elif mine and r < self.amend_share + self.repeat_share:
                    body = dict(rng.choice(mine))
                else:
                    body = {
                        "order_id": f"SO-{uuid.uuid4().hex[:12]}",
                        "customer_id": rng.choice(self.customers),
                        "amount": f"{rng.randint(100, 5000)}.{rng.randint(0, 99):02d}",
                        "currency": "EUR",
                        "payment_term_days": 30,
                    }
                mine.append(body)
                s = Sent(body["order_id"], body, time.monotonic())
                try:
                    resp = c.post("/v1/decisions", json=body)
                    s.status = resp.status_code
                    s.ctype = resp.headers.get("content-type", "")
                    try:
                        s.json = resp.json()
                    except ValueError:
                        s.json = resp.text
                except httpx.HTTPError as e:
                    s.error = type(e).__name__
                s.t_recv = time.monotonic()
                with self._lock:
                    self.sent.append(s)
                if s.status != 200:
                    time.sleep(0.01)


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def put_customers(base: str, admin_key: str, ids: list[str], limit: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        for cid in ids:
            r = c.put(
                f"/v1/customers/{cid}",
                headers={"Authorization": f"Bearer {admin_key}", "If-None-Match": "*"},
                json={
                    "currency": "EUR",
                    "credit_limit": limit,
                    "open_receivables": "0.00",
                    "facts": PRIME,
                },
            )
            assert r.status_code == 200, r.text


def check_consistency(store: Store, sent: list[Sent]) -> dict[str, int]:
    """The ledger and the log agree, nothing is half-written, the chain verifies, and every
    answered decision (200) is in the log. Returns some counts."""
    with store.engine.connect() as conn:
        log_rows = (
            conn.execute(
                sa.text(
                    "SELECT seq, decision_id, order_id, customer_id, outcome, kind, request "
                    "FROM decision_log ORDER BY seq"
                )
            )
            .mappings()
            .all()
        )
        res_rows = (
            conn.execute(
                sa.text("SELECT order_id, customer_id, amount, decision_id FROM reservations")
            )
            .mappings()
            .all()
        )
        cust_rows = (
            conn.execute(sa.text("SELECT customer_id, open_orders FROM customers")).mappings().all()
        )

    # the latest deciding record (new or amended; a repeat only echoes) per order
    latest: dict[str, Any] = {}
    for row in log_rows:
        if row["kind"] != "repeat":
            latest[row["order_id"]] = row
    reservations = {r["order_id"]: r for r in res_rows}
    for order_id, row in latest.items():
        res = reservations.get(order_id)
        if row["outcome"] == "approve":
            assert res is not None, (
                f"approved order {order_id} (seq {row['seq']}) has no reservation"
            )
            assert res["decision_id"] == row["decision_id"], (order_id, dict(res), row["seq"])
            req = row["request"]
            req = req if isinstance(req, dict) else json.loads(req)
            assert Decimal(str(res["amount"])) == Decimal(req["order"]["amount"]), order_id
        else:
            assert res is None, f"{row['outcome']} order {order_id} holds a reservation"
    orphans = sorted(set(reservations) - set(latest))
    assert not orphans, f"reservations without a decision record: {orphans[:5]}"

    per_customer: dict[str, Decimal] = {}
    for r in res_rows:
        per_customer[r["customer_id"]] = per_customer.get(r["customer_id"], 0) + Decimal(
            str(r["amount"])
        )
    for c in cust_rows:
        assert Decimal(str(c["open_orders"])) == per_customer.get(c["customer_id"], 0), (
            f"customer {c['customer_id']}: open_orders {c['open_orders']} but reservations "
            f"sum to {per_customer.get(c['customer_id'], 0)}"
        )

    verdict = store.audit.verify_chain()
    assert verdict["ok"], verdict
    assert verdict["checked"] == len(log_rows)

    logged_ids = {r["decision_id"] for r in log_rows}
    logged_orders = {r["order_id"] for r in log_rows}
    for s in sent:
        if s.status == 200:
            assert s.json["order_id"] in logged_orders
            if s.json["kind"] != "repeat":
                assert s.json["decision_id"] in logged_ids, (
                    f"answered decision {s.json['decision_id']} ({s.order_id}) is not recorded"
                )
    return {"log": len(log_rows), "reservations": len(res_rows), "orders": len(latest)}


def is_503_problem(s: Sent) -> bool:
    return (
        s.status == 503
        and s.ctype.startswith(PROBLEM)
        and isinstance(s.json, dict)
        and s.json.get("status") == 503
        and s.json.get("code") == "database_unavailable"
    )


# --------------------------------------------------------------------------- PostgreSQL lost


@pytest.fixture
def private_pg():
    reason = PrivatePostgres.unavailable()
    if reason:
        pytest.skip(f"private PostgreSQL cannot be started here: {reason}")
    try:
        pg = PrivatePostgres()
        pg.start()
    except Exception as e:  # noqa: BLE001 - any failure to set it up is a skip with the reason
        pytest.skip(f"private PostgreSQL cannot be started here: {str(e)[:300]}")
    yield pg
    pg.cleanup()


def test_postgres_lost_mid_load_fails_closed_and_recovers(private_pg, tmp_path: Path) -> None:
    pg = private_pg
    url = pg.create_database("creditgate")
    store = Store(url)
    store.upgrade()
    keys = {r: store.keys.create(r, name=f"faults {r}") for r in ("admin", "order_entry")}
    server = LiveServer(url, tmp_path)
    try:
        customers = [f"CUST-{i}" for i in range(4)]
        put_customers(server.base, keys["admin"], customers, "100000000.00")
        load = Load(server.base, keys["order_entry"], customers, threads=4, seed=1).start()
        try:
            wait_for(lambda: load.ok_count() >= 40, 60, "40 decisions before the loss")
            t_cut0 = time.monotonic()
            pg.stop("immediate")
            t_cut1 = time.monotonic()
            assert not pg.running()
            time.sleep(1.5)
            ready = httpx.get(server.base + "/readyz", timeout=10)
            assert ready.status_code == 503 and ready.headers["content-type"].startswith(PROBLEM)
            ok_during_outage = load.ok_count()
            t_back0 = time.monotonic()
            pg.start()
            wait_for(lambda: load.ok_count() > ok_during_outage, 30, "a decision after restart")
            t_back1 = time.monotonic()
            time.sleep(0.5)
        finally:
            load.stop()
        assert httpx.get(server.base + "/readyz", timeout=10).status_code == 200
    finally:
        server.stop()

    sent = load.sent
    before = [s for s in sent if s.t_recv < t_cut0]
    in_flight = [s for s in sent if s.t_send < t_cut1 and s.t_recv >= t_cut0]
    outage = [s for s in sent if s.t_send >= t_cut1 and s.t_recv <= t_back0]
    after = [s for s in sent if s.t_send >= t_back1]
    assert before and all(s.status == 200 for s in before), {s.status for s in before}
    assert len(outage) >= 10, f"only {len(outage)} requests during the outage"
    # during the outage: every answer is 503 problem+json, never a decision
    bad = [
        (s.order_id, s.status, s.error, str(s.json)[:200]) for s in outage if not is_503_problem(s)
    ]
    assert not bad, f"answers during the outage that are not 503 database_unavailable: {bad[:5]}"
    # around the cut: a decision committed before the loss, or a 503; nothing else
    bad = [
        (s.order_id, s.status, s.error, str(s.json)[:200])
        for s in in_flight
        if not (s.status == 200 or is_503_problem(s))
    ]
    assert not bad, f"answers around the loss: {bad[:5]}"
    # nothing else broke (no 500, no dropped connection) at any time
    others = {(s.status, s.error) for s in sent if s.status not in (200, 503)}
    assert not others, others
    # no approve after the loss until the database was back
    assert not [s for s in sent if s.t_send >= t_cut1 and s.t_recv <= t_back0 and s.status == 200]
    # recovered: orders decide (and approve) again
    assert after and any(s.status == 200 and s.json["outcome"] == "approve" for s in after)

    print(
        f"\nPostgreSQL lost: {len(before)} decided before the cut, around it "
        f"{sorted((s.status or s.error) for s in in_flight)}, {len(outage)} during the outage "
        f"(all 503), {len(after)} after the restart ({t_back1 - t_back0:.2f} s to recover)"
    )
    store.dispose()
    store = Store(url)
    try:
        counts = check_consistency(store, sent)
        with store.engine.connect() as conn:
            logged = set(conn.execute(sa.text("SELECT order_id FROM decision_log")).scalars())
        # orders sent during the outage were never recorded
        assert not {s.order_id for s in outage} & logged
        assert counts["log"] >= 40
    finally:
        store.dispose()


# --------------------------------------------------------------------------- crash (SIGKILL)


def test_crash_under_load_leaves_no_reservation_without_record(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    url = f"sqlite:///{db}"
    store = Store(url)
    store.upgrade()
    keys = {r: store.keys.create(r, name=f"faults {r}") for r in ("admin", "order_entry")}
    store.dispose()
    customers = [f"CUST-{i}" for i in range(3)]
    rng = random.Random(20261129)
    sent: list[Sent] = []
    kills = 0
    for round_ in range(4):
        server = LiveServer(url, tmp_path)
        if round_ == 0:
            # limits that fill up during the test: approvals, then refers
            put_customers(server.base, keys["admin"], customers, "600000.00")
        load = Load(
            server.base,
            keys["order_entry"],
            customers,
            threads=4,
            seed=round_,
            amend_share=0.15,
            repeat_share=0.1,
        ).start()
        try:
            wait_for(lambda load=load: len(load.sent) >= 5, 30, "requests under way")
            time.sleep(rng.uniform(0.2, 1.2))
            server.kill()
            kills += 1
        finally:
            load.stop()
            server.kill()
        sent += load.sent
        # consistent after every crash (SQLite rolls back the unfinished transaction)
        check = Store(url)
        try:
            check_consistency(check, sent)
        finally:
            check.dispose()

    answered = [s for s in sent if s.status == 200]
    lost = [s for s in sent if s.status is None]
    assert kills == 4 and len(answered) >= 20
    assert lost, "no request was in flight at a kill"
    assert {s.status for s in sent} <= {200, None}, {s.status for s in sent}

    # after the crashes the service starts again and decides; a lost order sent again is
    # decided once (new if it was never recorded, else repeat/amended: no double reservation)
    server = LiveServer(url, tmp_path)
    try:
        with httpx.Client(
            base_url=server.base,
            timeout=30,
            headers={"Authorization": f"Bearer {keys['order_entry']}"},
        ) as c:
            for s in lost[:10]:
                r = c.post("/v1/decisions", json=s.body)
                assert r.status_code == 200, r.text
                sent.append(
                    Sent(s.order_id, s.body, 0, 0, 200, r.headers["content-type"], r.json())
                )
        assert httpx.get(server.base + "/readyz", timeout=10).status_code == 200
    finally:
        server.stop()
    final = Store(url)
    try:
        counts = check_consistency(final, sent)
        with final.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
        assert counts["reservations"] > 0
        print(
            f"\ncrash: {kills} kills, {len(answered)} answered, {len(lost)} without an answer; "
            f"log {counts['log']} records, {counts['reservations']} reservations, consistent"
        )
    finally:
        final.dispose()
