"""HTTP benchmark: one run, one table.

Decisions per second and p50/p99 latency of ``POST /v1/decisions`` over HTTP against a live
server (``creditgate serve`` — uvicorn, one worker — started as a subprocess on a free port),
with SQLite (a fresh file) and with PostgreSQL (a fresh database created on the server of
``CREDITGATE_BENCH_PG``, default ``postgresql://postgres@127.0.0.1:5432/test``, dropped
after), every decision logged (hash-chained record + reservation, committed before the
answer). Client: ``httpx`` with 1 and 8 threads (one keep-alive connection per thread).

Workload: the accounts-receivable sample (``examples/receivables/positions.py``). Each of
its customers is created through ``PUT /v1/customers/{id}`` from its position at its last
invoice (limit, open receivables, days past due, profile facts); every invoice is then sent
as an order (invoice number = order id, amount, 30-day term) in invoice-date order, split
round-robin over the client threads. Approvals reserve credit, so the outcome mix shifts
towards refer as customers fill up — the same for every row (fresh database per row).

Beside each row, the in-process engine figure from the same run: ``engine.evaluate`` on the
*same* engine requests the server evaluated (read back from the row's ``decision_log``, so
ledger facts included), one thread, and the ratios HTTP/engine (throughput and p50). The
outcomes of the in-process replay are checked against the logged decisions.

Run from the repository root::

    .venv/bin/python benchmarks/http.py            # full run (about 2-4 minutes)
    .venv/bin/python benchmarks/http.py --quick    # smoke run (about 30 s)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as ``python benchmarks/http.py``, this folder comes first on sys.path and would shadow
# the standard library's ``http`` package (which httpx needs): drop it, put the root first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "examples" / "receivables"))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from engine.evaluate import evaluate, load  # noqa: E402

POLICY = ROOT / "policies.yaml"
PG_ADMIN = os.environ.get("CREDITGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
LEVELS = (1, 8)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------------------
def workload(n: int | None) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``(customers by id: PUT body, orders: POST body)`` from the AR sample."""
    from positions import CURRENCY, positions, read_invoices

    customers: dict[str, dict[str, Any]] = {}
    orders: list[dict[str, Any]] = []
    for inv, pos in positions(read_invoices()):
        customers[inv.customer_id] = {
            "currency": CURRENCY,
            "credit_limit": f"{pos.credit_limit:.2f}",
            "open_receivables": f"{pos.exposure:.2f}",
            "days_past_due": pos.days_past_due,
            "facts": {
                "overdue_amount": f"{pos.overdue_amount:.2f}",
                "avg_days_late": str(pos.avg_days_late),
                "disputed_invoices": pos.disputed_invoices,
                "years_in_business": str(pos.years_in_business),
                "risk_class": pos.risk_class,
                "new_customer": pos.new_customer,
            },
        }
        orders.append(
            {
                "order_id": inv.invoice_number,
                "customer_id": inv.customer_id,
                "amount": f"{inv.amount:.2f}",
                "currency": CURRENCY,
                "payment_term_days": inv.payment_term_days,
            }
        )
    if n is not None:
        orders = orders[:n]
        used = {o["customer_id"] for o in orders}
        customers = {k: v for k, v in customers.items() if k in used}
    return customers, orders


# ---------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------
# The same live server the fault tests start (tests/pgserver.py): one implementation.
from tests.pgserver import LiveServer as Server  # noqa: E402


def make_keys(database_url: str) -> dict[str, str]:
    from api.store import Store

    store = Store(database_url)
    try:
        return {r: store.create_api_key(r, name=f"bench {r}") for r in ("admin", "order_entry")}
    finally:
        store.dispose()


# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------
def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_http(
    server: Server,
    keys: dict[str, str],
    customers: dict[str, dict[str, Any]],
    orders: list[dict[str, Any]],
    threads: int,
) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    entry = {"Authorization": f"Bearer {keys['order_entry']}"}
    with httpx.Client(base_url=server.base, timeout=60) as c:
        for cid, body in customers.items():
            r = c.put(f"/v1/customers/{cid}", headers=admin, json=body)
            r.raise_for_status()
        # warm-up on a customer of its own (its reservations do not touch the workload's)
        c.put(
            "/v1/customers/WARMUP",
            headers=admin,
            json={
                "currency": "EUR",
                "credit_limit": "100000000.00",
                "facts": {"risk_class": "low", "years_in_business": "10"},
            },
        ).raise_for_status()
        for i in range(30):
            c.post(
                "/v1/decisions",
                headers=entry,
                json={
                    "order_id": f"WARM-{i}",
                    "customer_id": "WARMUP",
                    "amount": "100.00",
                    "currency": "EUR",
                    "payment_term_days": 30,
                },
            ).raise_for_status()

    latencies: list[list[float]] = [[] for _ in range(threads)]
    statuses: list[Counter[str]] = [Counter() for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        mine = orders[k::threads]
        with httpx.Client(base_url=server.base, timeout=60, headers=entry) as c:
            c.get("/healthz")  # open the connection before the clock starts
            barrier.wait()
            for body in mine:
                t0 = time.perf_counter()
                r = c.post("/v1/decisions", json=body)
                latencies[k].append(time.perf_counter() - t0)
                statuses[k][
                    r.json()["outcome"] if r.status_code == 200 else str(r.status_code)
                ] += 1

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(x for part in latencies for x in part)
    outcomes: Counter[str] = Counter()
    for s in statuses:
        outcomes.update(s)
    return {
        "n": len(lat),
        "rate": len(lat) / wall,
        "p50": pct(lat, 0.5) * 1e3,
        "p99": pct(lat, 0.99) * 1e3,
        "outcomes": outcomes,
        "wall": wall,
    }


def logged_requests(database_url: str) -> list[tuple[dict[str, Any], str]]:
    """The engine requests (and outcomes) of the workload's decisions, in log order."""
    eng = sa.create_engine(database_url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT request, outcome FROM decision_log "
                    "WHERE customer_id <> 'WARMUP' AND kind = 'new' ORDER BY seq"
                )
            ).all()
    finally:
        eng.dispose()
    return [(r if isinstance(r, dict) else json.loads(r), o) for r, o in rows]


def run_engine(compiled: Any, requests: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    for req, _ in requests[:30]:
        evaluate(compiled, req)
    lat = []
    mismatches = 0
    t0 = time.perf_counter()
    for req, outcome in requests:
        s = time.perf_counter()
        d = evaluate(compiled, req)
        lat.append(time.perf_counter() - s)
        mismatches += d.outcome != outcome
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "n": len(lat),
        "rate": len(lat) / wall,
        "p50": pct(lat, 0.5) * 1e3,
        "p99": pct(lat, 0.99) * 1e3,
        "mismatches": mismatches,
    }


def chain_verdict(database_url: str) -> dict[str, Any]:
    from api.store import Store

    store = Store(database_url)
    try:
        return store.verify_chain()
    finally:
        store.dispose()


# ---------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------
class Postgres:
    """Fresh databases on the PostgreSQL server at ``PG_ADMIN`` (dropped by ``close``)."""

    def __init__(self) -> None:
        import psycopg

        self.admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
        self.names: list[str] = []
        self.version = self.admin.execute("SHOW server_version").fetchone()[0]

    def new(self) -> str:
        name = f"cg_bench_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        base = sa.make_url(PG_ADMIN.replace("postgresql://", "postgresql+psycopg://", 1))
        return base.set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        for name in self.names:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.close()


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------
def machine(pg_version: str | None) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"

    def ver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    import sqlite3

    return [
        f"CPU      {cpu}; {os.cpu_count()} cores ({usable} usable) — server, clients and "
        "PostgreSQL share them",
        f"Python   {platform.python_implementation()} {platform.python_version()} "
        f"({platform.platform()})",
        f"Stack    uvicorn {ver('uvicorn')} (1 worker); fastapi {ver('fastapi')}; "
        f"sqlalchemy {ver('sqlalchemy')}; psycopg {ver('psycopg')}; httpx {ver('httpx')}; "
        f"durable_rules {ver('durable-rules')}",
        f"Database SQLite {sqlite3.sqlite_version} (WAL, file in {tempfile.gettempdir()}); "
        f"PostgreSQL {pg_version or 'not reachable'} (127.0.0.1, shared server)",
    ]


def table(rows: list[dict[str, Any]]) -> str:
    head1 = [
        "",
        "",
        "",
        "over HTTP, logged",
        "",
        "",
        "in-process engine",
        "",
        "",
        "HTTP/engine",
        "",
    ]
    head2 = [
        "database",
        "threads",
        "orders",
        "dec/s",
        "p50 ms",
        "p99 ms",
        "dec/s",
        "p50 ms",
        "p99 ms",
        "dec/s",
        "p50",
    ]
    body = []
    for r in rows:
        h, e = r["http"], r["engine"]
        body.append(
            [
                r["db"],
                str(r["threads"]),
                str(h["n"]),
                f"{h['rate']:,.0f}",
                f"{h['p50']:.2f}",
                f"{h['p99']:.2f}",
                f"{e['rate']:,.0f}",
                f"{e['p50']:.2f}",
                f"{e['p99']:.2f}",
                f"{h['rate'] / e['rate']:.2f}",
                f"{h['p50'] / e['p50']:.1f}×",
            ]
        )
    widths = [max(len(x[i]) for x in [head2, *body]) for i in range(len(head2))]
    line1 = []
    for start, count in ((0, 3), (3, 3), (6, 3), (9, 2)):
        w = sum(widths[start : start + count]) + 2 * (count - 1)
        line1.append(head1[start][:w].center(w))

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = ["  ".join(line1), fmt(head2), "  ".join("-" * w for w in widths)]
    out += [fmt(c) for c in body]
    return "\n".join(out)


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few orders: a smoke run")
    ap.add_argument(
        "--orders",
        type=int,
        default=None,
        help="orders per row (default: all 2466 invoices; 240 with --quick)",
    )
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the SQLite files and server logs in this folder",
    )
    args = ap.parse_args(list(argv) if argv is not None else None)
    n = args.orders or (240 if args.quick else None)

    customers, orders = workload(n)
    compiled = load(str(POLICY))
    load0 = os.getloadavg()
    started = time.perf_counter()

    pg: Postgres | None = None
    pg_note = ""
    if not args.no_pg:
        try:
            pg = Postgres()
        except Exception as e:  # noqa: BLE001 - report and go on with SQLite
            pg_note = (
                f"PostgreSQL rows skipped: {PG_ADMIN} not reachable ({str(e).splitlines()[0]})"
            )
            log(pg_note)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
        work = Path(tmp)
        if args.keep is not None:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        try:
            plan = [("SQLite", lvl) for lvl in LEVELS]
            if pg is not None:
                plan += [("PostgreSQL", lvl) for lvl in LEVELS]
            for db, threads in plan:
                if db == "SQLite":
                    url = f"sqlite:///{work / f'bench-{threads}.db'}"
                else:
                    assert pg is not None
                    url = pg.new()
                server = Server(url, work)
                try:
                    keys = make_keys(url)
                    log(f"{db}, {threads} thread(s): {len(orders)} orders to {server.base}")
                    http = run_http(server, keys, customers, orders, threads)
                finally:
                    server.stop()
                reqs = logged_requests(url)
                assert len(reqs) == len(orders), (len(reqs), len(orders))
                eng = run_engine(compiled, reqs)
                verdict = chain_verdict(url)
                ok = bool(verdict["ok"])
                log(
                    f"  http {http['rate']:,.0f}/s p50 {http['p50']:.2f} ms; engine "
                    f"{eng['rate']:,.0f}/s; chain {'ok' if ok else verdict}"
                )
                rows.append(
                    {
                        "db": db,
                        "threads": threads,
                        "http": http,
                        "engine": eng,
                        "chain": ok,
                        "verdict": verdict,
                    }
                )
        finally:
            if pg is not None:
                pg.close()

    print("\n".join(machine(pg.version if pg else None)))
    print(
        f"Run      {time.strftime('%Y-%m-%d %H:%M:%S')}; {'quick' if args.quick else 'full'} "
        f"run; {time.perf_counter() - started:.0f} s; policy {POLICY.name}; workload: "
        f"{len(orders)} AR-sample invoices as orders for {len(customers)} customers"
    )
    print()
    print(table(rows))
    print()
    for r in rows:
        oc = ", ".join(f"{k} {v}" for k, v in sorted(r["http"]["outcomes"].items()))
        chain = (
            "verifies"
            if r["chain"]
            else (f"BROKEN at seq {r['verdict']['first_broken_seq']}: {r['verdict']['reason']}")
        )
        print(
            f"{r['db']}, {r['threads']} thread(s): outcomes {oc}; hash chain "
            f"{chain}; in-process replay disagrees on "
            f"{r['engine']['mismatches']} of {r['engine']['n']}"
        )
    if pg_note:
        print(pg_note)
    load1 = os.getloadavg()
    print(
        "dec/s over HTTP: orders / wall time of all client threads; latency per request as "
        "the client sees it. Engine: evaluate() alone, one thread, same requests."
    )
    print(
        f"Load average before {load0[0]:.2f}, after {load1[0]:.2f} (1 min; {os.cpu_count()} cores)."
    )
    bad = [r for r in rows if not r["chain"] or r["engine"]["mismatches"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
