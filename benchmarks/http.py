"""HTTP benchmark: the service against its floors, one run, one table.

Rows (see benchmarks/README.md for every column):

- ``floor-framework``: a bare FastAPI app on uvicorn (uvloop, httptools) in its own process
  (``benchmarks/floor_app.py``): ``POST /v1/decisions`` reads the body and answers a canned
  real decision (~9 KB). 1 and 8 clients.
- ``floor-driver``: the decide-and-record transaction written directly on the driver
  (``benchmarks/driver_floor.py``: sqlite3 / psycopg 3 with prepared statements), in this
  process, no HTTP, no engine (canned decision), durable; one commit per decision and 16
  decisions per commit; on PostgreSQL also 8 threads with a connection each, grouped.
- ``service``: ``creditgate serve`` on a fresh SQLite file / a fresh PostgreSQL database
  (1 worker; PostgreSQL also ``--workers 2``), every decision durably committed and
  hash-chained; 1 and 8 clients. Afterwards ``creditgate audit verify`` must pass and the
  log must hold every answered decision.

Every HTTP row is driven by the same load generator (``benchmarks/loadgen.py``: asyncio +
uvloop over raw keep-alive sockets, requests pre-encoded), running in this process, whose
own CPU time is measured and printed. Peak rates are closed-loop; for the framework floor
and each service configuration an open-loop run at half its peak rate (latency from the
scheduled send time) gives p50/p99 at half the peak.

Workload: the accounts-receivable sample (``examples/receivables/positions.py``). Each of
its customers is created through ``PUT /v1/customers/{id}`` from its position at its last
invoice; every invoice is then sent as an order (invoice number = order id, amount, 30-day
term) in invoice-date order. Approvals reserve credit, so the outcome mix shifts towards
refer as customers fill up — the same for every row (fresh database per run).

The service is used through its command line (``creditgate db upgrade``, ``keys create``,
``serve``, ``audit verify``) and HTTP only; its log is read back with plain SQL.
PostgreSQL: fresh databases on the server of ``CREDITGATE_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``), dropped at the end.

Run from the repository root::

    .venv/bin/python benchmarks/http.py            # full run (about 8 minutes)
    .venv/bin/python benchmarks/http.py --quick    # smoke run (about 1 minute)
    .venv/bin/python benchmarks/http.py --no-pg    # SQLite only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as ``python benchmarks/http.py``, this folder comes first on sys.path and would shadow
# the standard library's ``http`` package (which urllib needs): drop it, put the root first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "examples" / "receivables"))

import urllib.request  # noqa: E402  (imports the standard library's http)

from benchmarks import driver_floor, loadgen  # noqa: E402

POLICY = ROOT / "policies.yaml"
CANNED_REQUEST = ROOT / "examples" / "requests" / "refer-over-limit.json"
PG_ADMIN = os.environ.get("CREDITGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
HOST = "127.0.0.1"
LEVELS = (1, 8)
GROUP = 16  # decisions per commit in the grouped driver floor
PG_THREADS = 8  # threads (one connection each) of the second grouped PostgreSQL floor
OPEN_CONNECTIONS = 16  # connections of the open-loop runs
WARMUP = 40  # warm-up decisions per run (on a customer of their own), before the clock
CLK = os.sysconf("SC_CLK_TCK")
JUNK_BYTES = 1_000_000  # body of each junk request (the service reads up to 1 MiB)
JUNK_CONNECTIONS = 10


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def creditgate() -> list[str]:
    """The ``creditgate`` command beside this interpreter (``python -m api.cli`` if none)."""
    script = Path(sys.executable).parent / "creditgate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


# ---------------------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------------------
def workload(n: int | None) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``(customers by id: PUT body, orders: POST body)`` from the AR sample. ``n`` beyond the
    number of invoices repeats them with ``~2``, ``~3``, ... appended to the order ids."""
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
        base = orders
        orders = list(base[:n])
        k = 1
        while len(orders) < n:
            k += 1
            orders += [{**o, "order_id": f"{o['order_id']}~{k}"} for o in base[: n - len(orders)]]
        used = {o["customer_id"] for o in orders}
        customers = {k: v for k, v in customers.items() if k in used}
    return customers, orders


WARM_CUSTOMER = {
    "currency": "EUR",
    "credit_limit": "100000000.00",
    "facts": {"risk_class": "low", "years_in_business": "10"},
}


def warm_orders() -> list[dict[str, Any]]:
    return [
        {
            "order_id": f"WARM-{i}",
            "customer_id": "WARMUP",
            "amount": "100.00",
            "currency": "EUR",
            "payment_term_days": 30,
        }
        for i in range(WARMUP)
    ]


def encode_all(port: int, key: str, orders: list[dict[str, Any]]) -> list[bytes]:
    headers = {"authorization": f"Bearer {key}"}
    return [loadgen.encode("POST", "/v1/decisions", HOST, port, headers, o) for o in orders]


# ---------------------------------------------------------------------------------------
# Processes: servers, CPU time
# ---------------------------------------------------------------------------------------
def junk_request(port: int, key: str) -> bytes:
    """1 MB of junk from a valid key: an order whose ``customer.country_risk`` fact is a
    string of a million ``x`` (read, parsed and refused with 422 before any lock)."""
    body: dict[str, Any] = {
        "order_id": "JUNK-1", "customer_id": "JUNK", "amount": "1.00", "currency": "EUR",
        "payment_term_days": 30, "facts": {"customer.country_risk": ""},
    }  # fmt: skip
    base = len(json.dumps(body, separators=(",", ":")))
    body["facts"]["customer.country_risk"] = "x" * (JUNK_BYTES - base)
    auth = {"authorization": f"Bearer {key}"}
    return loadgen.encode("POST", "/v1/decisions", HOST, port, auth, body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_ticks(pids: Iterable[int]) -> dict[int, int]:
    """utime + stime (clock ticks) of each pid still alive."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = int(fields[11]) + int(fields[12])
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendant processes (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores; user, nice, system, irq,
    softirq, steal from /proc/stat) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK


def wait_quiet(max_wait: float, threshold: float = 0.15, window: float = 2.0) -> None:
    """Wait (at most ``max_wait`` seconds) until the whole machine is busy less than
    ``threshold`` of all cores over ``window`` seconds: on a shared box, other processes'
    bursts would otherwise land in a row. Called right before each timed run, when this
    benchmark's own servers are idle."""
    if max_wait <= 0:
        return
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        b0 = machine_busy()
        time.sleep(window)
        share = (machine_busy() - b0) / window / (os.cpu_count() or 1)
        if share < threshold:
            return
        if time.monotonic() > deadline:
            log(f"  machine still {share:.0%} busy after {max_wait:.0f} s; going on")
            return
        if not said:
            log(f"  waiting for a quiet machine ({share:.0%} busy)")
            said = True


class CpuProbe:
    """CPU seconds used by a set of processes (``pids()`` asked at start and at stop)
    between ``start`` and ``stop``; a process that ended in between is not counted."""

    def __init__(self, pids: Callable[[], Iterable[int]]):
        self.pids = pids
        self.before: dict[int, int] = {}
        self.seconds = 0.0

    def start(self) -> None:
        self.before = cpu_ticks(self.pids())

    def stop(self) -> None:
        after = cpu_ticks(set(self.pids()) | set(self.before))
        self.seconds = sum(t - self.before.get(p, 0) for p, t in after.items()) / CLK


class Probe:
    """CPU seconds between ``start`` and ``stop``: of the server processes (``app``), of the
    PostgreSQL backends of the run's database (``db``) and of the whole machine (``busy``);
    ``other(ours)``: the share of all cores that went to anything else."""

    def __init__(
        self,
        app: Callable[[], Iterable[int]] | None = None,
        db: Callable[[], Iterable[int]] | None = None,
    ):
        self.app = CpuProbe(app) if app else None
        self.db = CpuProbe(db) if db else None
        self.busy = self.wall = 0.0

    def start(self) -> None:
        for p in (self.app, self.db):
            if p:
                p.start()
        self.busy, self.wall = machine_busy(), time.perf_counter()

    def stop(self) -> None:
        self.busy, self.wall = machine_busy() - self.busy, time.perf_counter() - self.wall
        for p in (self.app, self.db):
            if p:
                p.stop()

    def into(self, res: dict[str, Any], ours: float) -> None:
        """Per decision: ``cpu_app``, ``cpu_db`` (ms, None if not probed); ``other``: share
        of all cores used by anything but ``ours`` + app + db (other processes, kernel
        threads, PostgreSQL's background writers, the hypervisor's steal)."""
        n = res["n"]
        app = self.app.seconds if self.app else 0.0
        db = self.db.seconds if self.db else 0.0
        res["cpu_app"] = app / n * 1e3 if self.app else None
        res["cpu_db"] = db / n * 1e3 if self.db else None
        res["other"] = max(0.0, self.busy - ours - app - db) / (self.wall * (os.cpu_count() or 1))


class Server:
    """A server process (``argv``) on ``port``; stderr to ``logfile``; ready when
    ``GET /readyz`` answers 200."""

    def __init__(self, argv: list[str], env: dict[str, str], logfile: Path, port: int):
        self.port = port
        self.base = f"http://{HOST}:{port}"
        self.logfile = logfile
        with open(logfile, "wb") as err:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:  # refused while starting; HTTPError (503) is an OSError too
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready after 90 s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, n: int = 3000) -> str:
        return self.logfile.read_text(errors="replace")[-n:] if self.logfile.exists() else ""

    def pids(self) -> list[int]:
        return descendants(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


# ---------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------
class Postgres:
    """Fresh databases on the PostgreSQL server at ``PG_ADMIN`` (dropped by ``close``)."""

    def __init__(self) -> None:
        import psycopg

        self.admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
        self.names: list[str] = []
        self.settings = {
            s: self.admin.execute(f"SHOW {s}").fetchone()[0]
            for s in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
        }

    def new(self) -> tuple[str, str]:
        """A fresh database: ``(name, libpq URL)``."""
        name = f"cg_bench_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        u = urlsplit(PG_ADMIN)
        return name, urlunsplit((u.scheme, u.netloc, f"/{name}", u.query, u.fragment))

    def backends(self, name: str) -> list[int]:
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        for name in self.names:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.close()


def read_log(url: str) -> tuple[list[tuple[dict[str, Any], str]], int]:
    """The workload's new decisions (engine request, outcome) in log order, read with plain
    SQL, and the number of all its log records. ``request`` may be a JSON column or a TEXT
    column holding the JSON text: both are parsed."""
    new = (
        "SELECT request, outcome FROM decision_log "
        "WHERE customer_id <> 'WARMUP' AND kind = 'new' ORDER BY seq"
    )
    count = "SELECT count(*) FROM decision_log WHERE customer_id <> 'WARMUP'"
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            rows = conn.execute(new).fetchall()
            total = conn.execute(count).fetchone()[0]
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            rows = conn.execute(new).fetchall()
            total = conn.execute(count).fetchone()[0]
    return [(json.loads(r) if isinstance(r, str | bytes) else r, o) for r, o in rows], total


# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, pg: Postgres | None):
        self.args, self.work, self.pg = args, work, pg
        self.customers, self.orders = workload(args.orders)
        self.open_seconds = 5.0 if args.quick else 30.0

    def cli(self, url: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [*creditgate(), *argv],
            cwd=ROOT,
            env=self.env(url),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"creditgate {' '.join(argv)} exited {r.returncode}: {r.stderr}")
        return r

    @staticmethod
    def env(url: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": url,
            "CREDITGATE_DATABASE_URL": url,
            "CREDITGATE_POLICY_PATH": str(POLICY),
        }

    # -- the framework floor ----------------------------------------------------------------
    def canned_decision(self) -> Path:
        """A real decision (``creditgate decide`` on an example request) as the service
        sends it: compact JSON with ``kind``."""
        r = subprocess.run(
            [*creditgate(), "decide", str(CANNED_REQUEST), "--policy", str(POLICY)],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        body = {**json.loads(r.stdout), "kind": "new"}
        path = self.work / "canned-decision.json"
        path.write_bytes(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
        return path

    def framework(self, canned: Path) -> tuple[dict[int, dict], dict]:
        port = free_port()
        env = {**os.environ, "CREDITGATE_FLOOR_DECISION": str(canned)}
        argv = [sys.executable, "-m", "benchmarks.floor_app", str(port)]
        server = Server(argv, env, self.work / "floor-framework.log", port)
        key = "cg_" + "x" * 43  # same length as a real key; the floor does not check it
        reqs = encode_all(port, key, self.orders)
        warm = encode_all(port, key, warm_orders())
        out = {}
        try:
            for clients in LEVELS:
                wait_quiet(self.args.wait_quiet)
                probe = Probe(server.pids)
                res = loadgen.run(
                    loadgen.closed_loop(HOST, port, reqs, clients, warm, probe.start, probe.stop)
                )
                probe.into(res, res["cpu"])
                log(f"  floor-framework, {clients} client(s): {res['rate']:,.0f}/s")
                out[clients] = res
            rate = max(r["rate"] for r in out.values()) / 2
            wait_quiet(self.args.wait_quiet)
            probe = Probe(server.pids)
            half = loadgen.run(
                loadgen.open_loop(
                    HOST,
                    port,
                    self.open_requests(reqs, rate),
                    rate,
                    OPEN_CONNECTIONS,
                    warm,
                    probe.start,
                    probe.stop,
                )
            )
            probe.into(half, half["cpu"])
        finally:
            server.stop()
        return out, half

    def open_requests(self, reqs: list[bytes], rate: float) -> list[bytes]:
        """The first requests, enough for ``open_seconds`` at ``rate`` (at least 100)."""
        return reqs[: max(100, int(rate * self.open_seconds))]

    # -- the driver floor -------------------------------------------------------------------
    def driver(self, template: driver_floor.DecisionTemplate) -> list[dict[str, Any]]:
        rows = []
        for group in (1, GROUP):
            path = self.work / f"floor-driver-{group}.db"
            wait_quiet(self.args.wait_quiet)
            probe = Probe()
            res = driver_floor.run_sqlite(
                str(path),
                self.customers,
                self.orders,
                template,
                group,
                (probe.start, probe.stop),
            )
            probe.into(res, res["cpu"])
            res["cpu_app"], res["db"] = res["cpu_ms"], "SQLite"
            rows.append(res)
            log(f"  floor-driver SQLite, {group}/commit: {res['rate']:,.0f}/s")
        if self.pg is not None:
            for group, threads in ((1, 1), (GROUP, 1), (GROUP, PG_THREADS)):
                _, url = self.pg.new()
                wait_quiet(self.args.wait_quiet)
                probe = Probe()
                res = driver_floor.run_postgres(
                    url,
                    self.customers,
                    self.orders,
                    template,
                    group,
                    threads,
                    (probe.start, probe.stop),
                )
                probe.into(res, res["cpu"] + res["db_cpu"])
                res["cpu_app"], res["cpu_db"] = res["cpu_ms"], res["db_cpu_ms"]
                res["db"] = "PostgreSQL"
                rows.append(res)
                log(
                    f"  floor-driver PostgreSQL, {group}/commit, {threads} thread(s): "
                    f"{res['rate']:,.0f}/s"
                )
        return rows

    # -- the service ------------------------------------------------------------------------
    def service(
        self,
        db: str,
        workers: int,
        clients: int | None = None,
        rate: float | None = None,
        junk: bool = False,
    ) -> dict[str, Any]:
        """One run on a fresh database: closed loop with ``clients`` or open loop at
        ``rate``; ``junk``: meanwhile ``JUNK_CONNECTIONS`` more connections send
        ``junk_request`` over and over (closed loop only)."""
        if db == "SQLite":
            url = f"sqlite:///{self.work / f'service-{uuid.uuid4().hex[:8]}.db'}"
            backends: Callable[[], list[int]] | None = None
        else:
            assert self.pg is not None
            name, url = self.pg.new()
            pg = self.pg
            backends = lambda: pg.backends(name)  # noqa: E731
        self.cli(url, "db", "upgrade")
        key = self.cli(url, "keys", "create", "--role", "admin", "--name", "bench").stdout.strip()
        port = free_port()
        argv = [*creditgate(), "serve", "--port", str(port), "--workers", str(workers)]
        server = Server(argv, self.env(url), self.work / f"service-{port}.log", port)
        try:
            auth = {"authorization": f"Bearer {key}"}
            create = {**auth, "if-none-match": "*"}  # new customers: PUT needs a precondition
            puts = [
                loadgen.encode("PUT", f"/v1/customers/{quote(cid, safe='')}", HOST, port, create, b)
                for cid, b in {**self.customers, "WARMUP": WARM_CUSTOMER}.items()
            ]
            setup = loadgen.run(loadgen.closed_loop(HOST, port, puts, 4))
            if set(setup["statuses"]) - {200, 201}:
                raise RuntimeError(f"PUT /v1/customers: {setup['statuses']} {setup['errors']}")
            reqs = encode_all(port, key, self.orders)
            warm = encode_all(port, key, warm_orders())
            wait_quiet(self.args.wait_quiet)
            probe = Probe(server.pids, backends)
            if rate is None:
                assert clients is not None
                noise = junk_request(port, key) if junk else None
                res = loadgen.run(
                    loadgen.closed_loop(
                        HOST, port, reqs, clients, warm, probe.start, probe.stop,
                        noise=noise, noise_connections=JUNK_CONNECTIONS,
                    )
                )  # fmt: skip
            else:
                reqs = self.open_requests(reqs, rate)
                res = loadgen.run(
                    loadgen.open_loop(
                        HOST, port, reqs, rate, OPEN_CONNECTIONS, warm, probe.start, probe.stop
                    )
                )
        finally:
            server.stop()
        probe.into(res, res["cpu"])
        verify = self.cli(url, "audit", "verify", check=False)
        res["chain_ok"] = verify.returncode == 0
        res["chain_msg"] = (verify.stderr or verify.stdout).strip().splitlines()[:2]
        res["logged"], res["log_records"] = read_log(url)
        res["db"], res["workers"] = db, workers
        return res


# ---------------------------------------------------------------------------------------
# Engine in process
# ---------------------------------------------------------------------------------------
def replay(requests: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    """``engine.evaluate`` on the logged requests, one thread; outcomes compared."""
    from engine.evaluate import evaluate, load

    compiled = load(str(POLICY))
    for req, _ in requests[:30]:
        evaluate(compiled, req)
    gc.collect()
    mismatches = 0
    t0 = time.perf_counter()
    for req, outcome in requests:
        mismatches += evaluate(compiled, req).outcome != outcome
    wall = time.perf_counter() - t0
    return {"rate": len(requests) / wall, "mismatches": mismatches, "n": len(requests)}


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------
def ver(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def sqlite_default_sync() -> str:
    with tempfile.TemporaryDirectory() as d:
        conn = sqlite3.connect(str(Path(d) / "x.db"))
        conn.execute("PRAGMA journal_mode = WAL")
        value = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.close()
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(value, str(value))


def machine(pg: Postgres | None) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    auto = (
        "uvloop + httptools"
        if ver("uvloop") != "not installed" and ver("httptools") != "not installed"
        else "asyncio + h11 (uvloop/httptools not installed)"
    )
    pgline = "not used"
    if pg is not None:
        s = pg.settings
        pgline = (
            f"{s['server_version']} (127.0.0.1, shared server; synchronous_commit="
            f"{s['synchronous_commit']}, fsync={s['fsync']}, wal_sync_method="
            f"{s['wal_sync_method']})"
        )
    return [
        f"CPU       {cpu}; {os.cpu_count()} cores ({usable} usable): load generator, servers "
        "and PostgreSQL share them",
        f"Python    {platform.python_implementation()} {platform.python_version()} "
        f"({platform.platform()})",
        f"Stack     uvicorn {ver('uvicorn')} (service: loop/http 'auto' = {auto}; floor: "
        f"uvloop + httptools); uvloop {ver('uvloop')}; httptools {ver('httptools')}; fastapi "
        f"{ver('fastapi')}; starlette {ver('starlette')}; psycopg {ver('psycopg')}; "
        f"durable_rules {ver('durable-rules')}",
        f"Generator asyncio on {loadgen.LOOP}, raw keep-alive HTTP/1.1, pre-encoded requests, "
        "in the benchmark process",
        f"SQLite    {sqlite3.sqlite_version}, WAL, files in {tempfile.gettempdir()}; floor: "
        f"synchronous=FULL; service: SQLite's default in WAL here = {sqlite_default_sync()}",
        f"Postgres  {pgline}",
    ]


def fmt_table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, body)])


def f0(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def f2(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def ratio(a: float, b: float | None) -> str:
    return "–" if not b else f"{a / b:.2f}"


def label(db: str, workers: int) -> str:
    return f"service {db}" + ("" if db == "SQLite" else f" {workers}w")


def report(r: dict[str, Any]) -> tuple[str, bool]:
    """The text printed for a run's results ``r``, and whether every check passed."""
    fw, drivers, services, halves = r["fw"], r["drivers"], r["services"], r["halves"]
    grouped = {d["db"]: d["rate"] for d in drivers if d["group"] == GROUP and d["threads"] == 1}
    out = [*machine(r["pg"])]
    out.append(
        f"Run       {r['when']}; {'quick' if r['quick'] else 'full'} run; {r['seconds']:.0f} s; "
        f"policy {POLICY.name}; workload {r['n']} AR-sample invoices as orders for "
        f"{r['customers']} customers (+{WARMUP} warm-up orders per run, not timed)"
        + (
            f"; each timed run waited up to {r['wait_quiet']:.0f} s for < 15 % machine load"
            if r["wait_quiet"]
            else ""
        )
    )
    out.append(
        f"Load avg  before {r['load0']:.2f}, after {r['load1']:.2f} (1 min; {os.cpu_count()} cores)"
    )
    out.append("")
    head = ["row", "clients", "decisions", "dec/s", "p50 ms", "p99 ms", "×framework",
            "×driver grp", "CPU ms/dec app", "db", "gen µs/req", "gen CPU", "other CPU",
            "engine dec/s"]  # fmt: skip
    body = []

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.0%}"

    for clients, x in fw.items():
        body.append(
            ["floor-framework", str(clients), str(x["n"]), f0(x["rate"]), f2(x["p50"]),
             f2(x["p99"]), ratio(x["rate"], fw[clients]["rate"]), "–", f2(x["cpu_app"]), "–",
             f0(x["cpu_us"]), pct(x["cpu_share"]), pct(x["other"]), "–"]
        )  # fmt: skip
    for d in drivers:
        kind = "per-commit" if d["group"] == 1 else f"grouped {d['group']}"
        who = "1 conn" if d["threads"] == 1 else f"{d['threads']} thr"
        body.append(
            [f"floor-driver {d['db']} {kind}", who, str(d["n"]), f0(d["rate"]), f2(d["p50"]),
             f2(d["p99"]), "–", ratio(d["rate"], grouped.get(d["db"])), f2(d["cpu_app"]),
             f2(d["cpu_db"]), "–", "–", pct(d["other"]), "–"]
        )  # fmt: skip
    for (db, workers), runs in services.items():
        for clients, x in runs.items():
            body.append(
                [label(db, workers), str(clients), str(x["n"]), f0(x["rate"]), f2(x["p50"]),
                 f2(x["p99"]), ratio(x["rate"], fw[clients]["rate"]),
                 ratio(x["rate"], grouped.get(db)), f2(x["cpu_app"]), f2(x["cpu_db"]),
                 f0(x["cpu_us"]), pct(x["cpu_share"]), pct(x["other"]),
                 f0(x["engine"]["rate"]) if "engine" in x else "–"]
            )  # fmt: skip
    out += [fmt_table(head, body), ""]

    out.append(
        "Half the peak rate, open loop (latency from each request's scheduled send time; "
        f"{OPEN_CONNECTIONS} connections):"
    )
    half_rows = [("floor-framework", r["fw_half"], max(x["rate"] for x in fw.values()))]
    for (db, workers), h in halves.items():
        peak = max(x["rate"] for x in services[(db, workers)].values())
        half_rows.append((label(db, workers), h, peak))
    for name, h, peak in half_rows:
        out.append(
            f"  {name:<24} {h['target']:,.0f}/s (peak {peak:,.0f}/s): {h['n']} sent at "
            f"{h['rate']:,.0f}/s; p50 {h['p50']:.2f} ms, p99 {h['p99']:.2f} ms, max "
            f"{h['max']:.1f} ms; generator late p99 {h['lag_p99']:.2f} ms, sent p99 "
            f"{h['wait_p99']:.2f} ms after due; other CPU {h['other']:.0%}"
        )
    out.append("")

    out.append(
        f"Another customer's orders (1 client) while {JUNK_CONNECTIONS} more connections send "
        f"{JUNK_BYTES:,} B junk orders (a 1 MB fact value: 422 before any lock) back to back:"
    )
    for db, x in r["junk"].items():
        quiet, n = services[(db, 1)][1], x["noise"]
        out.append(
            f"  {label(db, 1):<24} {x['rate']:,.0f} dec/s ({x['rate'] / quiet['rate']:.2f}× "
            f"without junk), p50 {x['p50']:.2f} ms, p99 {x['p99']:.2f} ms (without: "
            f"{quiet['p50']:.2f} / {quiet['p99']:.2f} ms); junk answered {n['n']:,} "
            f"({n['rate']:,.0f}/s, {n['rate'] * n['request_bytes'] / 1e6:,.0f} MB/s), p50 "
            f"{n['p50']:.1f} ms, statuses {dict(n['statuses'])}, answer {n['resp_bytes']:,.0f} B"
        )
    out.append("")

    ok = True
    out.append("Checks:")
    for name, x in [*((f"floor-framework {c} client(s)", x) for c, x in fw.items()),
                    ("floor-framework open loop", r["fw_half"])]:  # fmt: skip
        if set(x["statuses"]) != {200}:
            ok = False
            out.append(f"  {name}: statuses {dict(x['statuses'])} {x['errors']}")
    for d in drivers:
        v = d["verify"]
        good = v["ok"] and v["checked"] == d["expected"]
        ok &= good
        out.append(
            f"  floor-driver {d['db']} {d['group']}/commit, {d['threads']} thread(s): chain "
            f"{'verifies' if good else 'BROKEN'} ({v['checked']} of {d['expected']} records"
            f"{'' if v['ok'] else ': ' + str(v['reason'])})"
        )
    for (db, workers), runs in services.items():
        for key, x in [*runs.items(), ("open", halves[(db, workers)])]:
            name = label(db, workers) + (" open loop" if key == "open" else f" {key} client(s)")
            answered = x["statuses"].get(200, 0)
            problems = []
            if set(x["statuses"]) != {200}:
                problems.append(f"statuses {dict(x['statuses'])} {x['errors']}")
            if x["log_records"] != answered:
                problems.append(f"{x['log_records']} log records for {answered} answers")
            if not x["chain_ok"]:
                problems.append("audit verify: " + " / ".join(x["chain_msg"]))
            eng = x.get("engine")
            if eng and eng["mismatches"]:
                problems.append(f"in-process replay disagrees on {eng['mismatches']}")
            ok &= not problems
            oc = ", ".join(f"{k} {v}" for k, v in sorted(x["outcomes"].items()))
            out.append(
                f"  {name}: {'; '.join(problems) or 'ok'} ({x['log_records']} logged, "
                f"audit verify {'ok' if x['chain_ok'] else 'FAILED'}; outcomes {oc}; mean "
                f"answer {x['resp_bytes']:,.0f} B)"
            )
    for db, x in r["junk"].items():
        answered = x["statuses"].get(200, 0)
        problems = []
        if set(x["statuses"]) != {200}:
            problems.append(f"statuses {dict(x['statuses'])} {x['errors']}")
        if set(x["noise"]["statuses"]) != {422}:
            problems.append(f"junk statuses {dict(x['noise']['statuses'])}")
        if x["log_records"] != answered:
            problems.append(f"{x['log_records']} log records for {answered} answers")
        if not x["chain_ok"]:
            problems.append("audit verify: " + " / ".join(x["chain_msg"]))
        ok &= not problems
        out.append(f"  {label(db, 1)} with junk: {'; '.join(problems) or 'ok'} "
                   f"({x['log_records']} logged, no junk logged)")
    if r["pg_note"]:
        out.append(f"  {r['pg_note']}")
    out.append("")

    out.append(
        "Aims (issue 7): service peak ≥ 0.35× the framework floor and ≥ 0.7× the grouped "
        "driver floor (SQLite), ≥ 0.7× the grouped driver floor (PostgreSQL); p99 < 25 ms at "
        "half the peak rate."
    )
    for (db, workers), runs in services.items():
        clients, best = max(runs.items(), key=lambda kv: kv[1]["rate"])
        h = halves[(db, workers)]
        parts = []
        if db == "SQLite":
            x = best["rate"] / fw[clients]["rate"]
            parts.append(f"×framework {x:.2f} ({'met' if x >= 0.35 else 'not met'})")
        x = best["rate"] / grouped[db]
        parts.append(f"×driver grouped {x:.2f} ({'met' if x >= 0.7 else 'not met'})")
        met = "met" if h["p99"] < 25 else "not met"
        parts.append(f"p99 at half peak {h['p99']:.1f} ms ({met})")
        peak = f"peak with {clients} client{'s' if clients != 1 else ''}"
        out.append(f"  {label(db, workers)} ({peak}): {'; '.join(parts)}")
    out.append("")
    out.append(
        "floor-driver rows: no engine, no HTTP (a canned decision of "
        f"{r['canned_bytes']:,} B), in the benchmark process; latency = the transaction's "
        f"begin → commit (grouped: all {GROUP} decisions of it). See benchmarks/README.md."
    )
    return "\n".join(out), ok


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 120 orders, short open loop")
    ap.add_argument(
        "--orders",
        type=int,
        default=None,
        help="orders per run (default: all 2466 invoices; 120 with --quick; more than 2466 "
        "repeats the invoices under new order ids)",
    )
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each timed run, wait up to SECONDS for the machine to be less than 15%% "
        "busy (for shared machines; default 0: do not wait)",
    )
    ap.add_argument(
        "--keep", type=Path, default=None, help="keep the SQLite files and server logs here"
    )
    args = ap.parse_args(list(argv) if argv is not None else None)
    # SIGTERM (kill) unwinds like Ctrl-C: servers stopped, databases dropped, files removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.orders is None and args.quick:
        args.orders = 120

    r: dict[str, Any] = {"quick": args.quick, "load0": os.getloadavg()[0], "pg_note": ""}
    r["wait_quiet"] = args.wait_quiet
    r["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
    started = time.perf_counter()
    pg: Postgres | None = None
    if not args.no_pg:
        try:
            pg = Postgres()
        except Exception as e:  # noqa: BLE001 - report and go on with SQLite
            r["pg_note"] = (
                f"PostgreSQL rows skipped: {PG_ADMIN} not reachable ({str(e).splitlines()[0]})"
            )
            log(r["pg_note"])
    r["pg"] = pg
    configs = [("SQLite", 1)] + ([("PostgreSQL", 1), ("PostgreSQL", 2)] if pg else [])
    services: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    halves: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
        work = Path(tmp)
        if args.keep is not None:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        try:
            bench = Bench(args, work, pg)
            r["n"], r["customers"] = len(bench.orders), len(bench.customers)
            log(f"{r['n']} orders for {r['customers']} customers per run")
            canned = bench.canned_decision()
            r["canned_bytes"] = canned.stat().st_size
            template = driver_floor.DecisionTemplate(canned.read_bytes())
            log("floor-framework")
            r["fw"], r["fw_half"] = bench.framework(canned)
            log("floor-driver")
            r["drivers"] = bench.driver(template)
            for db, workers in configs:
                runs = {}
                for clients in LEVELS:
                    log(f"{label(db, workers)}, {clients} client(s)")
                    runs[clients] = x = bench.service(db, workers, clients=clients)
                    log(
                        f"  {x['rate']:,.0f}/s p50 {x['p50']:.2f} ms p99 {x['p99']:.2f} ms; "
                        f"audit verify {'ok' if x['chain_ok'] else 'FAILED'}"
                    )
                services[(db, workers)] = runs
                rate = max(x["rate"] for x in runs.values()) / 2
                log(f"{label(db, workers)}, open loop at {rate:,.0f}/s")
                halves[(db, workers)] = h = bench.service(db, workers, rate=rate)
                log(f"  p50 {h['p50']:.2f} ms p99 {h['p99']:.2f} ms")
            r["junk"] = {}
            for db in [c[0] for c in configs if c[1] == 1]:
                log(f"{label(db, 1)}, 1 client, {JUNK_CONNECTIONS} connections sending junk")
                r["junk"][db] = x = bench.service(db, 1, clients=1, junk=True)
                log(f"  {x['rate']:,.0f}/s p50 {x['p50']:.2f} ms p99 {x['p99']:.2f} ms; junk "
                    f"{x['noise']['rate']:,.0f}/s {dict(x['noise']['statuses'])}")
        finally:
            if pg is not None:
                pg.close()
    r["services"], r["halves"] = services, halves
    log("engine in process")
    for runs in services.values():
        for x in runs.values():
            x["engine"] = replay(x["logged"])
    r["load1"] = os.getloadavg()[0]
    r["seconds"] = time.perf_counter() - started
    text, ok = report(r)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
