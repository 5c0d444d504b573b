"""``creditgate serve --workers N`` on PostgreSQL (issue 7, part 2): concurrent decisions in
several worker processes, each with its own group-commit writer, never deadlock, never fail
and never approve past a credit limit; ``/metrics`` adds up every worker; a revoked key is
refused by every worker within one second. Real servers, real HTTP."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_pg_database
from tests.helpers import eventually
from tests.pgserver import ROOT, LiveServer

# real servers with several workers each: about a minute in all
pytestmark = pytest.mark.slow

PRIME = {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.4"}


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def key(url: str, role: str) -> str:
    r = cli(url, "keys", "create", "--role", role)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def pg(tmp_path: Path):
    with fresh_pg_database("cg_workers") as url:
        assert cli(url, "db", "upgrade").returncode == 0
        yield url


def test_four_workers_and_200_concurrent_orders(pg: str, tmp_path: Path) -> None:
    admin, entry, audit = key(pg, "admin"), key(pg, "order_entry"), key(pg, "compliance")
    server = LiveServer(pg, tmp_path, workers=4)
    try:
        limits = {f"C{i}": Decimal(20000 + 5000 * i) for i in range(5)}
        with httpx.Client(base_url=server.base, timeout=60) as c:
            for cid, limit in limits.items():
                r = c.put(
                    f"/v1/customers/{cid}",
                    headers={"Authorization": f"Bearer {admin}", "If-None-Match": "*"},
                    json={
                        "currency": "EUR",
                        "credit_limit": str(limit),
                        "open_receivables": "0.00",
                        "facts": PRIME,
                    },
                )
                assert r.status_code == 200, r.text
        # 200 orders over 5 customers: most compete for the same limits; 20 order ids are
        # sent for two customers at once (one of them must be refused, 409); 20 orders are
        # sent twice (a repeat, or amended by a second amount).
        orders = []
        for i in range(160):
            cid = f"C{i % 5}"
            orders.append({"order_id": f"SO-{i}", "customer_id": cid, "amount": "2500.00"})
        for i in range(20):
            orders.append({"order_id": f"TWIN-{i}", "customer_id": "C0", "amount": "100.00"})
            orders.append({"order_id": f"TWIN-{i}", "customer_id": "C1", "amount": "100.00"})
        assert len(orders) == 200
        for o in orders:
            o.update(currency="EUR", payment_term_days=30)

        async def send_all() -> list[httpx.Response]:
            limits_ = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits_) as c:
                headers = {"Authorization": f"Bearer {entry}"}
                return await asyncio.gather(
                    *(c.post("/v1/decisions", headers=headers, json=o) for o in orders)
                )

        answers = asyncio.run(send_all())
        statuses = [r.status_code for r in answers]
        assert 503 not in statuses and 500 not in statuses, server.log_tail()
        assert set(statuses) <= {200, 409}, [r.text for r in answers if r.status_code >= 400][:3]
        # each twin order id: exactly one customer got it
        for i in range(20):
            twins = [
                r for o, r in zip(orders, answers, strict=True) if o["order_id"] == f"TWIN-{i}"
            ]
            assert sorted(r.status_code for r in twins) == [200, 409]
        # no limit was exceeded by approvals, and the ledger agrees with the answers
        approved: dict[str, Decimal] = dict.fromkeys(limits, Decimal(0))
        for o, r in zip(orders, answers, strict=True):
            if r.status_code == 200 and r.json()["outcome"] == "approve":
                approved[o["customer_id"]] += Decimal(o["amount"])
        with httpx.Client(base_url=server.base, timeout=60) as c:
            for cid, limit in limits.items():
                position = c.get(
                    f"/v1/customers/{cid}", headers={"Authorization": f"Bearer {admin}"}
                ).json()
                assert Decimal(position["open_orders"]) == approved[cid] <= limit, cid
            verify = c.get("/v1/audit/verify", headers={"Authorization": f"Bearer {audit}"})
            body = verify.json()
        assert body["ok"] is True, body
        assert body["checked"] == statuses.count(200)
        assert "deadlock" not in server.log_tail(100_000).lower()
    finally:
        server.stop()


def _metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_metrics_add_up_every_worker(pg: str, tmp_path: Path) -> None:
    admin, entry = key(pg, "admin"), key(pg, "order_entry")
    metrics_dir = tmp_path / "metrics"
    server = LiveServer(pg, tmp_path, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        with httpx.Client(base_url=server.base, timeout=60) as c:
            c.put(
                "/v1/customers/C1",
                headers={"Authorization": f"Bearer {admin}", "If-None-Match": "*"},
                json={"currency": "EUR", "credit_limit": "1000000.00", "facts": PRIME},
            ).raise_for_status()

        async def send(n: int) -> None:
            async with httpx.AsyncClient(base_url=server.base, timeout=60) as c:
                headers = {"Authorization": f"Bearer {entry}"}
                rs = await asyncio.gather(
                    *(
                        c.post(
                            "/v1/decisions",
                            headers=headers,
                            json={
                                "order_id": f"M-{i}",
                                "customer_id": "C1",
                                "amount": "10.00",
                                "currency": "EUR",
                                "payment_term_days": 30,
                            },
                        )
                        for i in range(n)
                    )
                )
                assert all(r.status_code == 200 for r in rs)

        asyncio.run(send(60))
        pids: set[str] = set()
        for _ in range(10):  # whichever worker answers, the sums are the whole service's
            with httpx.Client(base_url=server.base, timeout=60) as c:
                r = c.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            assert _metric(r.text, "creditgate_decisions_total") == 60
            assert _metric(r.text, "creditgate_decision_batch_size_sum") == 60
            pids |= set(re.findall(r'creditgate_worker_cpu_seconds{pid="(\d+)"}', r.text))
            memory = re.findall(r"creditgate_worker_resident_memory_bytes{pid=\S+} (\S+)", r.text)
            assert memory and all(float(m) > 10_000_000 for m in memory)
        assert len(pids) == 2, pids  # both workers publish their CPU time
        assert list(metrics_dir.glob("*.db"))  # multiprocess mode: the workers' files
    finally:
        server.stop()


def test_a_revoked_key_is_refused_by_every_worker_within_a_second(pg: str, tmp_path: Path) -> None:
    entry = key(pg, "order_entry")
    server = LiveServer(pg, tmp_path, workers=2)
    try:
        headers = {"Authorization": f"Bearer {entry}"}
        with httpx.Client(base_url=server.base, timeout=60) as c:

            def burst() -> list[int]:  # several connections: both workers answer
                return [
                    httpx.get(server.base + "/v1/customers/NOBODY", headers=headers).status_code
                    for _ in range(12)
                ]

            assert set(burst()) == {404}  # the key works (and is cached) everywhere
            listed = cli(pg, "keys", "list").stdout.splitlines()
            key_id = next(line.split()[0] for line in listed if "order_entry" in line)
            assert cli(pg, "keys", "revoke", key_id).returncode == 0
            statuses, seconds = eventually(burst, lambda s: set(s) == {401}, within=2.0)
            assert set(statuses) == {401} and seconds <= 1.3, (statuses, seconds)
            assert c.get("/healthz").status_code == 200
    finally:
        server.stop()
