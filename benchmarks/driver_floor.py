"""The plain-driver decide-and-record floor of ``benchmarks/http.py``.

The transaction the service runs for a decision, written directly on the database driver
(``sqlite3``; psycopg 3 with every statement prepared), in this process, no HTTP, no ORM,
**no engine evaluation** (the decision is a canned ~9 KB decision JSON with this decision's
id, order id and customer id spliced in). Per decision:

1. lock and read the customer row (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite: the
   transaction is ``BEGIN IMMEDIATE``, the database write lock);
2. read the order's state: its last decision (``decision_log`` by order id, newest seq) and
   its reservation (``FOR UPDATE`` on PostgreSQL);
3. build the request snapshot (ledger facts + order, canonical JSON text) and the content
   hash of the order;
4. lock and read the chain head (``FOR UPDATE`` on PostgreSQL), then insert the
   hash-chained decision-log record: seq = head + 1, prev_hash = head's hash, record_hash
   = sha256(prev_hash + envelope), the envelope being canonical JSON of the record's columns
   with the request snapshot and the decision JSON text embedded as they are;
5. insert the reservation (for every decision, as for an approval);
6. update the customer's ``open_orders``;
7. update the chain head.

Committed after every decision ("per-commit") or after every ``group`` decisions in one
transaction ("grouped"). Durable: SQLite in WAL mode with ``synchronous=FULL``; PostgreSQL
with the server's settings (``synchronous_commit=on`` by default, reported by the caller).
Own tables (mirroring the service's: every table has ``business_unit``; primary keys are
``(business_unit, ...)``; the service's indexes on order id, customer id, created_at and
the unique decision id), in a fresh SQLite file or a fresh PostgreSQL database. After a run
``verify`` walks the chain (seq, links, hashes, head).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

__all__ = ["DecisionTemplate", "run_postgres", "run_sqlite"]

BU = "BU-1"
CHAIN = "decision_log"
CALLER = "order_entry:bench"
GENESIS = "0" * 64
Hooks = tuple[Callable[[], None] | None, Callable[[], None] | None]

# Types per dialect: {money} is TEXT (exact decimal text) on SQLite, NUMERIC(20,2) on PG.
SCHEMA = """
CREATE TABLE customers (
  business_unit TEXT NOT NULL, customer_id TEXT NOT NULL, currency TEXT NOT NULL,
  credit_limit {money} NOT NULL, open_receivables {money} NOT NULL,
  open_orders {money} NOT NULL, days_past_due INTEGER NOT NULL, facts TEXT NOT NULL,
  PRIMARY KEY (business_unit, customer_id));
CREATE TABLE reservations (
  business_unit TEXT NOT NULL, order_id TEXT NOT NULL, customer_id TEXT NOT NULL,
  amount {money} NOT NULL, decision_id TEXT NOT NULL, content_hash TEXT NOT NULL,
  status TEXT NOT NULL, invoiced {money} NOT NULL,
  PRIMARY KEY (business_unit, order_id));
CREATE INDEX reservations_customer ON reservations (business_unit, customer_id);
CREATE TABLE decision_log (
  business_unit TEXT NOT NULL, seq BIGINT NOT NULL, decision_id TEXT NOT NULL,
  order_id TEXT NOT NULL, customer_id TEXT NOT NULL, outcome TEXT NOT NULL,
  policy_sha256 TEXT NOT NULL, content_hash TEXT NOT NULL, caller TEXT NOT NULL,
  kind TEXT NOT NULL, created_at {ts} NOT NULL, request TEXT NOT NULL,
  decision TEXT NOT NULL, record_hash TEXT NOT NULL, prev_hash TEXT NOT NULL,
  PRIMARY KEY (business_unit, seq));
CREATE UNIQUE INDEX decision_log_decision_id ON decision_log (decision_id);
CREATE INDEX decision_log_order ON decision_log (business_unit, order_id, seq);
CREATE INDEX decision_log_customer ON decision_log (business_unit, customer_id);
CREATE INDEX decision_log_created ON decision_log (business_unit, created_at);
CREATE TABLE chain_head (
  business_unit TEXT NOT NULL, name TEXT NOT NULL, seq BIGINT NOT NULL,
  record_hash TEXT NOT NULL, PRIMARY KEY (business_unit, name));
"""

SQL = {
    "customer": "SELECT currency, credit_limit, open_receivables, open_orders, days_past_due, "
    "facts FROM customers WHERE business_unit = %s AND customer_id = %s{lock}",
    "last": "SELECT customer_id, content_hash FROM decision_log "
    "WHERE business_unit = %s AND order_id = %s ORDER BY seq DESC LIMIT 1",
    "reservation": "SELECT customer_id, amount, status, invoiced FROM reservations "
    "WHERE business_unit = %s AND order_id = %s{lock}",
    "head": "SELECT seq, record_hash FROM chain_head WHERE business_unit = %s AND name = %s{lock}",
    "log": "INSERT INTO decision_log (business_unit, seq, decision_id, order_id, customer_id, "
    "outcome, policy_sha256, content_hash, caller, kind, created_at, request, decision, "
    "record_hash, prev_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s, %s)",
    "reserve": "INSERT INTO reservations (business_unit, order_id, customer_id, amount, "
    "decision_id, content_hash, status, invoiced) VALUES (%s, %s, %s, %s, %s, %s, 'open', %s)",
    "open_orders": "UPDATE customers SET open_orders = %s "
    "WHERE business_unit = %s AND customer_id = %s",
    "set_head": "UPDATE chain_head SET seq = %s, record_hash = %s "
    "WHERE business_unit = %s AND name = %s",
}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class DecisionTemplate:
    """A real decision's compact JSON with its ``decision_id``, ``order_id`` and
    ``customer_id`` replaced per decision (pre-split, so filling it in is one join)."""

    def __init__(self, decision_json: bytes):
        d = json.loads(decision_json)
        self.outcome = d["outcome"]
        self.policy_sha256 = d["policy"]["sha256"]
        marks = {"decision_id": "@@D@@", "order_id": "@@O@@", "customer_id": "@@C@@"}
        text = json.dumps({**d, **marks}, separators=(",", ":"), ensure_ascii=False)
        pieces = re.split("@@([DOC])@@", text)
        self.parts = pieces[0::2]
        self.order = pieces[1::2]  # which id goes into each gap
        self.size = len(text.encode())

    def fill(self, decision_id: str, order_id: str, customer_id: str) -> str:
        ids = {
            "D": decision_id,
            "O": json.dumps(order_id, ensure_ascii=False)[1:-1],
            "C": json.dumps(customer_id, ensure_ascii=False)[1:-1],
        }
        out = [self.parts[0]]
        for key, part in zip(self.order, self.parts[1:], strict=True):
            out.append(ids[key])
            out.append(part)
        return "".join(out)


def envelope(r: dict[str, Any], request_text: str, decision_text: str) -> str:
    """Canonical JSON of the record (sorted keys, no spaces) with the request snapshot and
    the decision embedded as they are (already canonical / compact JSON text)."""
    return (
        f'{{"business_unit":{json.dumps(r["business_unit"])},"caller":{json.dumps(r["caller"])},'
        f'"content_hash":"{r["content_hash"]}","created_at":"{r["created_at"]}",'
        f'"customer_id":{json.dumps(r["customer_id"])},"decision":{decision_text},'
        f'"decision_id":"{r["decision_id"]}","kind":"{r["kind"]}",'
        f'"order_id":{json.dumps(r["order_id"])},"outcome":"{r["outcome"]}",'
        f'"policy_sha256":"{r["policy_sha256"]}","prev_hash":"{r["prev_hash"]}",'
        f'"request":{request_text},"seq":{r["seq"]}}}'
    )


class _Decider:
    """The per-decision work on one connection; ``pg`` selects placeholders and locks."""

    def __init__(self, conn: Any, pg: bool, template: DecisionTemplate):
        self.conn, self.pg, self.t = conn, pg, template
        lock = " FOR UPDATE" if pg else ""
        self.sql = {
            k: (v.format(lock=lock) if pg else v.format(lock="").replace("%s", "?"))
            for k, v in SQL.items()
        }
        self.cur = conn.cursor()
        if pg:
            self.ex: Callable[..., Any] = lambda q, p: self.cur.execute(q, p, prepare=True)
        else:
            self.ex = self.cur.execute

    def money(self, v: Decimal) -> Any:
        return v if self.pg else format(v, "f")

    def decide(self, order: dict[str, Any]) -> None:
        ex, q, cur = self.ex, self.sql, self.cur
        oid, cid = order["order_id"], order["customer_id"]
        amount = Decimal(order["amount"])
        ex(q["customer"], (BU, cid))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"unknown customer {cid}")
        currency, limit, receivables, open_orders, dpd, facts = row
        open_orders = Decimal(open_orders)
        ex(q["last"], (BU, oid))
        last = cur.fetchone()
        ex(q["reservation"], (BU, oid))
        previous = cur.fetchone()
        if last is not None or previous is not None:
            # The workload's order ids are unique: a repeat or an amendment is a bug here.
            raise RuntimeError(f"order {oid} was decided before")
        if order["currency"] != currency:
            raise ValueError(f"order currency {order['currency']} is not {currency}")
        customer = json.loads(facts)
        customer["days_past_due"] = dpd
        customer["credit_limit"] = format(Decimal(limit), "f")
        customer["exposure"] = format(Decimal(receivables) + open_orders, "f")
        customer["id"] = cid
        o = {
            "id": oid,
            "amount": order["amount"],
            "currency": order["currency"],
            "payment_term_days": order["payment_term_days"],
        }
        request_text = _dumps({"customer": customer, "order": o})
        chash = hashlib.sha256(_dumps(order).encode()).hexdigest()
        decision_id = str(uuid.uuid4())
        decision_text = self.t.fill(decision_id, oid, cid)
        created = datetime.now(UTC)
        ex(q["head"], (BU, CHAIN))
        seq, prev = cur.fetchone()
        rec = {
            "business_unit": BU,
            "seq": seq + 1,
            "decision_id": decision_id,
            "order_id": oid,
            "customer_id": cid,
            "outcome": self.t.outcome,
            "policy_sha256": self.t.policy_sha256,
            "content_hash": chash,
            "caller": CALLER,
            "kind": "new",
            "created_at": created.isoformat(timespec="microseconds"),
            "prev_hash": prev,
        }
        rhash = hashlib.sha256(
            (prev + envelope(rec, request_text, decision_text)).encode()
        ).hexdigest()
        ex(
            q["log"],
            (
                BU,
                seq + 1,
                decision_id,
                oid,
                cid,
                rec["outcome"],
                rec["policy_sha256"],
                chash,
                CALLER,
                "new",
                created if self.pg else rec["created_at"],
                request_text,
                decision_text,
                rhash,
                prev,
            ),
        )
        ex(
            q["reserve"],
            (BU, oid, cid, self.money(amount), decision_id, chash, self.money(Decimal("0.00"))),
        )
        ex(q["open_orders"], (self.money(open_orders + amount), BU, cid))
        ex(q["set_head"], (seq + 1, rhash, BU, CHAIN))

    def begin(self) -> None:
        if not self.pg:
            self.cur.execute("BEGIN IMMEDIATE")
        # psycopg opens the transaction implicitly at the first statement

    def commit(self) -> None:
        if self.pg:
            self.conn.commit()
        else:
            self.cur.execute("COMMIT")


def _setup(conn: Any, pg: bool, customers: dict[str, dict[str, Any]]) -> None:
    cur = conn.cursor()
    schema = SCHEMA.format(
        money="NUMERIC(20, 2)" if pg else "TEXT", ts="TIMESTAMPTZ" if pg else "TEXT"
    )
    p = "%s" if pg else "?"
    if not pg:
        cur.execute("BEGIN")
    for stmt in schema.split(";"):
        if stmt.strip():
            cur.execute(stmt)
    rows = [
        (
            BU,
            cid,
            c["currency"],
            c["credit_limit"],
            c.get("open_receivables", "0.00"),
            "0.00",
            c.get("days_past_due", 0),
            _dumps(c.get("facts", {})),
        )
        for cid, c in customers.items()
    ]
    cur.executemany(f"INSERT INTO customers VALUES ({', '.join([p] * 8)})", rows)
    cur.execute(f"INSERT INTO chain_head VALUES ({p}, {p}, 0, {p})", (BU, CHAIN, GENESIS))
    if pg:
        conn.commit()
    else:
        cur.execute("COMMIT")


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _pct(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _timed(
    deciders: list[_Decider],
    parts: list[list[dict[str, Any]]],
    group: int,
    hooks: Hooks = (None, None),
) -> dict:
    """Run ``parts[k]`` on ``deciders[k]`` (one thread each when several), ``group``
    decisions per transaction; latency of a decision = its transaction's begin → commit.
    ``hooks``: called right before / after the timed part."""
    lat: list[list[float]] = [[] for _ in parts]

    def work(k: int) -> None:
        d, mine, out = deciders[k], parts[k], lat[k]
        perf = time.perf_counter
        for start in range(0, len(mine), group):
            batch = mine[start : start + group]
            t0 = perf()
            d.begin()
            for order in batch:
                d.decide(order)
            d.commit()
            out.extend([perf() - t0] * len(batch))

    backends = [d.conn.info.backend_pid for d in deciders if d.pg]
    b0 = sum(_cpu_ticks(p) for p in backends)
    if hooks[0] is not None:
        hooks[0]()
    cpu0, t0 = time.process_time(), time.perf_counter()
    if len(parts) == 1:
        work(0)
    else:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(parts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if hooks[1] is not None:
        hooks[1]()
    db_cpu = (sum(_cpu_ticks(p) for p in backends) - b0) / os.sysconf("SC_CLK_TCK")
    s = sorted(x for part in lat for x in part)
    n = len(s)
    return {
        "n": n,
        "wall": wall,
        "rate": n / wall,
        "p50": _pct(s, 0.5) * 1e3,
        "p99": _pct(s, 0.99) * 1e3,
        "cpu": cpu,
        "db_cpu": db_cpu if backends else 0.0,
        "cpu_ms": cpu / n * 1e3,
        "db_cpu_ms": db_cpu / n * 1e3 if backends else None,
        "group": group,
        "threads": len(parts),
    }


def _warm_orders(n: int) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    cust = {
        "WARMUP": {
            "currency": "EUR",
            "credit_limit": "100000000.00",
            "facts": {"risk_class": "low", "years_in_business": "10"},
        }
    }
    orders = [
        {
            "order_id": f"WARM-{i}",
            "customer_id": "WARMUP",
            "amount": "100.00",
            "currency": "EUR",
            "payment_term_days": 30,
        }
        for i in range(n)
    ]
    return cust, orders


def verify(conn: Any, pg: bool, template: DecisionTemplate) -> dict[str, Any]:
    """Walk the chain: contiguous seq from 1, prev_hash links, every record_hash recomputed
    from the stored columns, the head = the last record. ``{"ok", "checked", "reason"}``."""
    cur = conn.cursor()
    p = "%s" if pg else "?"
    cur.execute(
        "SELECT business_unit, seq, decision_id, order_id, customer_id, outcome, "
        "policy_sha256, content_hash, caller, kind, created_at, request, decision, "
        f"record_hash, prev_hash FROM decision_log WHERE business_unit = {p} ORDER BY seq",
        (BU,),
    )
    cols = [c[0] for c in cur.description]
    last_seq, last_hash, checked = 0, GENESIS, 0
    reason = None
    for row in cur.fetchall():
        r = dict(zip(cols, row, strict=True))
        if pg:
            r["created_at"] = r["created_at"].astimezone(UTC).isoformat(timespec="microseconds")
        if r["seq"] != last_seq + 1 or r["prev_hash"] != last_hash:
            reason = f"gap or broken link at seq {r['seq']}"
            break
        h = hashlib.sha256((r["prev_hash"] + envelope(r, r["request"], r["decision"])).encode())
        if h.hexdigest() != r["record_hash"]:
            reason = f"record_hash mismatch at seq {r['seq']}"
            break
        last_seq, last_hash, checked = r["seq"], r["record_hash"], checked + 1
    cur.execute(f"SELECT seq, record_hash FROM chain_head WHERE business_unit = {p}", (BU,))
    if reason is None and tuple(cur.fetchone()) != (last_seq, last_hash):
        reason = "chain head differs from the last record"
    if pg:
        conn.rollback()
    return {"ok": reason is None, "checked": checked, "reason": reason}


def run_sqlite(
    path: str,
    customers: dict[str, dict[str, Any]],
    orders: list[dict[str, Any]],
    template: DecisionTemplate,
    group: int,
    hooks: Hooks = (None, None),
) -> dict[str, Any]:
    """One connection, WAL, ``synchronous=FULL``, ``group`` decisions per commit."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        assert (mode, sync) == ("wal", 2), (mode, sync)
        wcust, worders = _warm_orders(32)
        _setup(conn, False, {**customers, **wcust})
        d = _Decider(conn, False, template)
        _timed([d], [worders], group)
        res = _timed([d], [orders], group, hooks)
        res["verify"] = verify(conn, False, template)
        res["expected"] = len(orders) + len(worders)
        return res
    finally:
        conn.close()


def run_postgres(
    dsn: str,
    customers: dict[str, dict[str, Any]],
    orders: list[dict[str, Any]],
    template: DecisionTemplate,
    group: int,
    threads: int = 1,
    hooks: Hooks = (None, None),
) -> dict[str, Any]:
    """``threads`` connections (one thread each; the orders split by customer, so no two
    threads lock the same customer), ``group`` decisions per commit."""
    import psycopg

    conns = [psycopg.connect(dsn, autocommit=False) for _ in range(threads)]
    try:
        for c in conns:
            c.prepare_threshold = 0
        wcust, worders = _warm_orders(32)
        _setup(conns[0], True, {**customers, **wcust})
        deciders = [_Decider(c, True, template) for c in conns]
        for k, d in enumerate(deciders):  # prepare every statement on every connection
            _timed([d], [worders[k::threads]], group)
        owner = {cid: k % threads for k, cid in enumerate(sorted(customers))}
        parts: list[list[dict[str, Any]]] = [[] for _ in range(threads)]
        for o in orders:
            parts[owner[o["customer_id"]]].append(o)
        res = _timed(deciders, parts, group, hooks)
        res["verify"] = verify(conns[0], True, template)
        res["expected"] = len(orders) + len(worders)
        return res
    finally:
        for c in conns:
            c.close()
