"""Replay the accounts-receivable sample as orders over HTTP against a live Creditgate service.

Usage (from the repository root)::

    .venv/bin/python examples/receivables/http_replay.py --spawn [--limit N]
    .venv/bin/python examples/receivables/http_replay.py --url http://127.0.0.1:8000 --key KEY

Every invoice of the CSV (default ``../shared/data/ar-invoices/accounts-receivable.csv``)
becomes an order, in date order, sent as ``POST /v1/decisions`` with httpx; the report is the
one of ``replay.py`` (outcome mix, decisions by realised outcome, conditions, tiers, reason
codes) plus the HTTP side: decisions per second and p50/p99 latency of the round trip (each
decision committed to the decision log before the answer), and the audit chain check
(``GET /v1/audit/verify``) at the end.

``--spawn`` starts a service itself (``python -m api.cli serve``, i.e. ``creditgate serve``)
on a free port of 127.0.0.1 with a new SQLite database in a temporary directory and the
shipped policy, creates an admin key in that database, and stops it afterwards. Otherwise
``--url`` and ``--key`` name a running service; the key must be an ``admin`` key in
``ledger`` mode (it writes customers) and ``order_entry`` or ``admin`` in ``facts`` mode
(``GET /v1/audit/verify`` needs ``compliance`` or ``admin``; without it that check is
skipped).

Where the customer's position comes from (``--mode``):

- ``ledger`` (default): the customers are loaded into the service's ledger: before each
  order, ``PUT /v1/customers/{id}`` sets the customer's position at the invoice date
  (``load_customers.customer_body``: limit, open receivables, days past due and the other
  policy inputs as ledger facts) and the order carries no customer facts at all — the
  service fills them from its ledger, as for an ERP. The service reserves every approved
  order (``open_orders``); since every order of the data was in fact invoiced, the replay
  then posts ``invoice_issued`` (``POST /v1/customers/{id}/events``), which moves the
  reservation to open receivables, and the next ``PUT`` sets the receivables the data has
  open at the next invoice date (settlements included). ``open_receivables`` is set to the
  data's open invoices minus what is still reserved (never below 0), so where a service has
  no ledger-event route (it answers 404; then reservations are kept) the report counts the
  positions whose service exposure differs from the data's.
- (``facts`` mode, which sent the position as order facts for customers unknown to the
  ledger, was removed: the service now refuses unknown customers and facts that contradict
  its ledger.)

``--prefix P`` is put before every order and customer id, so a replay can be repeated
against the same database without meeting its earlier orders (the same order id with the
same content would be answered with the stored decision, ``kind=repeat``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_customers  # noqa: E402
import positions  # noqa: E402
from replay import ReplayResult, report  # noqa: E402

__all__ = ["HttpReplay", "Server", "free_port", "http_replay", "main", "spawn_server"]

DEFAULT_POLICY = positions.REPO_ROOT / "policies.yaml"
# "facts" mode (customers unknown to the ledger, position sent as order facts) was removed:
# the service refuses customers its ledger does not hold (404) and order facts that
# contradict the ledger, so a caller can never bring its own credit limit.
MODES = ("ledger",)


# --------------------------------------------------------------------------- a live server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A service started by ``spawn_server``: its ``url``, an ``admin_key``, the
    ``database_url`` and the process (its log in ``log_path``)."""

    url: str
    admin_key: str
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path,
                timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}:\n"
                               + log_path.read_text(errors="replace")[-4000:])
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not get ready in {timeout:.0f} s:\n"
                               + log_path.read_text(errors="replace")[-4000:])
        time.sleep(0.2)


@contextlib.contextmanager
def spawn_server(
    workdir: str | Path | None = None,
    *,
    policy: str | Path = DEFAULT_POLICY,
    database_url: str | None = None,
    port: int | None = None,
    timeout: float = 60,
) -> Iterator[Server]:
    """Start ``creditgate serve`` (``python -m api.cli serve``, the interpreter running this)
    on 127.0.0.1 and a free port, with a new SQLite database in ``workdir`` (default: a
    temporary directory) unless ``database_url`` is given; create an admin key; wait for
    ``/readyz``; stop the service (SIGTERM) on leaving."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="creditgate-"))
        workdir = Path(workdir)
        database_url = database_url or f"sqlite:///{workdir / 'creditgate.db'}"
        from api.store import Store

        store = Store(database_url)
        try:
            store.upgrade()
            admin_key = store.keys.create("admin", name="http_replay")
        finally:
            store.dispose()
        port = port or free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CREDITGATE_") and k != "DATABASE_URL"}
        env.update({"CREDITGATE_DATABASE_URL": database_url,
                    "CREDITGATE_POLICY_PATH": str(Path(policy).resolve())})
        log_path = workdir / "server.log"
        log = stack.enter_context(open(log_path, "wb"))
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=str(positions.REPO_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, log_path, timeout)
            yield Server(url, admin_key, database_url, process, log_path)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


# --------------------------------------------------------------------------- the replay


@dataclass
class HttpReplay:
    """``result`` as ``replay.replay`` makes it (``seconds``: wall time of the decision
    round trips), plus the HTTP side: ``latencies`` (s) per decision request, ``kinds``
    (new / repeat / amended), ``customers`` written and ``overstated`` (ledger positions whose
    service exposure exceeds the data's because of still-reserved orders), ``audit`` (the
    ``GET /v1/audit/verify`` answer, or None)."""

    mode: str
    result: ReplayResult = field(default_factory=ReplayResult)
    latencies: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    customers: set[str] = field(default_factory=set)
    position_updates: int = 0
    invoices_issued: int = 0
    overstated: int = 0
    audit: dict[str, Any] | None = None


def _record(result: ReplayResult, d: dict[str, Any], paid_late: bool) -> None:
    result.rows.append((d["outcome"], paid_late))
    result.tiers[d["tier"]] += 1
    result.reasons.update({r["code"] for r in d["reasons"]})
    if d["outcome"] == "approve":
        if d.get("deposit_amount") and Decimal(d["deposit_amount"]) != 0:
            result.conditions["deposit"] += 1
        term = d.get("approved_payment_term_days")
        if term is not None and term < (d.get("requested_payment_term_days") or 0):
            result.conditions["shorter_term"] += 1
        if term == 0:
            result.conditions["cash_in_advance"] += 1


def _invoice_issued(client: Any, out: HttpReplay, cid: str, order: dict[str, Any]) -> bool:
    """The approved order is invoiced (it is an invoice of the data): ``invoice_issued``
    moves its reservation to open receivables. Returns False (and records nothing) if the
    service has no ledger-event route."""
    r = client.post(f"/v1/customers/{cid}/events", json={
        "event_id": f"{order['order_id']}:invoice",
        "type": "invoice_issued",
        "order_id": order["order_id"],
        "amount": order["amount"],
        "currency": order["currency"],
    })
    if r.status_code in (404, 405) and _problem_code(r) != "unknown_customer":
        return False
    if not 200 <= r.status_code < 300:
        raise RuntimeError(f"POST /v1/customers/{cid}/events: {r.status_code} {r.text}")
    out.invoices_issued += 1
    return True


def _problem_code(r: Any) -> str:
    try:
        return str(r.json().get("code"))
    except ValueError:
        return "?"


def http_replay(
    client: Any,
    invoices: list[positions.Invoice],
    *,
    mode: str = "ledger",
    prefix: str = "",
    verify: bool = True,
    progress: bool = False,
) -> HttpReplay:
    """Replay ``invoices`` (replay order) as orders through ``client`` (an ``httpx.Client``
    with the service's base URL and a key). A refused request counts as outcome ``error``
    with ``http:<status>:<problem code>``; the replay goes on."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    out = HttpReplay(mode)
    reserved: dict[str, Decimal] = {}
    events = True  # until the service turns out not to have ledger events
    n = len(invoices)
    for i, (inv, pos) in enumerate(positions.positions(invoices), start=1):
        cid = prefix + inv.customer_id
        body: dict[str, Any] = {
            "order_id": prefix + inv.invoice_number,
            "customer_id": cid,
            "amount": str(inv.amount),
            "currency": positions.CURRENCY,
            "payment_term_days": inv.payment_term_days,
        }
        if mode == "ledger":
            customer = load_customers.customer_body(pos)
            held = reserved.get(cid, Decimal("0.00"))
            customer["open_receivables"] = str(max(pos.exposure - held, Decimal("0.00")))
            row = load_customers.put_customer(client, cid, customer).json()
            reserved[cid] = Decimal(row["open_orders"])
            if Decimal(row["exposure"]) != pos.exposure:
                out.overstated += 1
            out.customers.add(cid)
            out.position_updates += 1
        else:
            request = positions.to_request(inv, pos)
            body["facts"] = {f"customer.{k}": v for k, v in request["customer"].items()
                             if k != "id"}
        start = time.perf_counter()
        r = client.post("/v1/decisions", json=body)
        elapsed = time.perf_counter() - start
        out.latencies.append(elapsed)
        out.result.seconds += elapsed
        if r.status_code == 200:
            d = r.json()
            out.kinds[d.get("kind", "?")] += 1
            _record(out.result, d, inv.paid_late)
            if mode == "ledger" and events and d["outcome"] == "approve":
                events = _invoice_issued(client, out, cid, body)
        else:
            out.result.rows.append(("error", inv.paid_late))
            out.result.errors[f"http:{r.status_code}:{_problem_code(r)}"] += 1
        if progress and (i % 250 == 0 or i == n):
            print(f"  {i}/{n} orders", file=sys.stderr, flush=True)
    if verify:
        r = client.get("/v1/audit/verify")
        if r.status_code == 200:
            out.audit = r.json()
    return out


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def render(run: HttpReplay, *, url: str, policy_label: str, data_label: str,
           top: int = 10) -> str:
    """``replay.report`` for the HTTP run, with the HTTP figures instead of its speed line."""
    text = report(run.result, policy_label=policy_label, data_label=data_label, top=top)
    lines = text.splitlines()
    while lines and (lines[-1].startswith("Speed:") or not lines[-1].strip()):
        lines.pop()
    lines[0] = "Creditgate receivables replay over HTTP"
    lines.insert(1, f"service: {url} (mode {run.mode})")
    n = run.result.total
    rate = n / run.result.seconds if run.result.seconds else float("inf")
    lines += ["", "HTTP"]
    if run.mode == "ledger":
        lines.append(f"  customers in the ledger: {len(run.customers)} "
                     f"({run.position_updates} position updates, PUT /v1/customers)")
        lines.append(f"  approved orders invoiced (invoice_issued ledger events): "
                     f"{run.invoices_issued}")
        lines.append(f"  positions whose service exposure differs from the data's (approved "
                     f"orders still reserved): {run.overstated} of {run.position_updates}")
    kinds = ", ".join(f"{k} {c}" for k, c in sorted(run.kinds.items())) or "none"
    lines.append(f"  decisions answered: {sum(run.kinds.values())} of {n} ({kinds})")
    lines.append(f"  {n} POST /v1/decisions in {run.result.seconds:.2f} s = {rate:,.0f} "
                 f"decisions/s (one client, sequential); latency p50 "
                 f"{_quantile(run.latencies, 0.5) * 1000:.1f} ms, p99 "
                 f"{_quantile(run.latencies, 0.99) * 1000:.1f} ms")
    if run.audit is None:
        lines.append("  audit: not checked (the key may not read /v1/audit/verify)")
    elif run.audit.get("ok"):
        lines.append(f"  audit: ok, {run.audit['checked']} records, hash chain intact")
    elif run.audit.get("reason") or (run.audit.get("ledger") or {}).get("reason"):
        chain = run.audit if run.audit.get("reason") else run.audit["ledger"]
        lines.append(f"  audit: BROKEN at seq {chain.get('first_broken_seq')}: "
                     f"{chain.get('reason')}")
    else:
        problems = (run.audit.get("consistency") or {}).get("problems") or [{}]
        lines.append(f"  audit: BROKEN ledger consistency: {problems[0].get('message')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of a running service")
    where.add_argument("--spawn", action="store_true",
                       help="start a service on a free port with a temporary SQLite database")
    parser.add_argument("--key", default=os.environ.get("CREDITGATE_KEY"),
                        help="API key (with --url; default $CREDITGATE_KEY)")
    parser.add_argument("--mode", choices=MODES, default="ledger",
                        help="customer position from the ledger (default) or request facts")
    parser.add_argument("--policy", default=str(DEFAULT_POLICY),
                        help="policy for --spawn (default: policies.yaml)")
    parser.add_argument("--csv", default=str(positions.DEFAULT_CSV),
                        help="accounts-receivable CSV (default: the shared sample)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N invoices")
    parser.add_argument("--prefix", default="", help="put before every order and customer id")
    parser.add_argument("--top", type=int, default=10, help="reason codes to list")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.url and not args.key:
        parser.error("--url needs --key (or CREDITGATE_KEY)")

    import httpx

    invoices = positions.read_invoices(args.csv)
    customers = len({inv.customer_id for inv in invoices})
    first, last = invoices[0].invoice_date, invoices[-1].invoice_date
    data_label = (f"{Path(args.csv).name}: {len(invoices)} invoices, {customers} customers, "
                  f"{first} .. {last}")
    if args.limit is not None:
        invoices = invoices[: args.limit]
        data_label += f"; first {len(invoices)} replayed"

    with contextlib.ExitStack() as stack:
        if args.spawn:
            server = stack.enter_context(spawn_server(policy=args.policy))
            url, key = server.url, server.admin_key
        else:
            url, key = args.url.rstrip("/"), args.key
        client = stack.enter_context(httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60))
        r = client.get("/v1/policy")
        if r.status_code == 200:
            p = r.json()
            policy_label = f"{p['id']} {p['version']} (sha256 {p['sha256'][:12]}, from the service)"
        else:
            policy_label = "the service's policy"
        run = http_replay(client, invoices, mode=args.mode, prefix=args.prefix,
                          progress=not args.quiet)
    print(render(run, url=url, policy_label=policy_label, data_label=data_label, top=args.top))
    return 0 if run.audit is None or run.audit.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
