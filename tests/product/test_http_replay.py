"""The receivables replay over HTTP against a live service (examples/receivables/http_replay.py).

A real ``creditgate serve`` process (uvicorn, started as a subprocess on a free port of
127.0.0.1 with a new SQLite file under tmp_path and the shipped policy) is sent the first 200
invoices of ../shared/data/ar-invoices/accounts-receivable.csv as orders with httpx, with
the customers' positions loaded into the ledger. Every decision must be answered, logged (one
log record per order, hash chain
intact).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "receivables"
CSV = ROOT.parent / "shared" / "data" / "ar-invoices" / "accounts-receivable.csv"
POLICY = ROOT / "policies.yaml"
N = 200

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import http_replay  # noqa: E402
import positions  # noqa: E402
from replay import replay  # noqa: E402

from engine.evaluate import load  # noqa: E402

pytestmark = pytest.mark.skipif(not CSV.exists(), reason=f"shared data missing: {CSV}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[http_replay.Server]:
    with http_replay.spawn_server(tmp_path_factory.mktemp("http-replay"), policy=POLICY) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: http_replay.Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {server.admin_key}"}) as c:
        yield c


@pytest.fixture(scope="module")
def invoices() -> list[positions.Invoice]:
    return positions.read_invoices(CSV)[:N]


def in_process(invoices: list[positions.Invoice]) -> Any:
    """``replay.py``'s in-process replay of the same invoices."""
    return replay(load(str(POLICY)), [(positions.to_request(inv, pos), inv.paid_late)
                                      for inv, pos in positions.positions(invoices)])


def logged(client: httpx.Client) -> list[dict[str, Any]]:
    """Every decision-log record, through GET /v1/decisions (all pages)."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor is not None:
            params["cursor"] = cursor
        r = client.get("/v1/decisions", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def check_logged(client: httpx.Client, run: http_replay.HttpReplay, prefix: str,
                 invoices: list[positions.Invoice]) -> None:
    assert run.audit is not None and run.audit["ok"], run.audit
    mine = [r for r in logged(client) if r["order_id"].startswith(prefix)]
    assert sorted(r["order_id"] for r in mine) == sorted(
        prefix + inv.invoice_number for inv in invoices)
    assert Counter(r["outcome"] for r in mine) == run.result.outcome_counts()
    assert all(r["kind"] == "new" for r in mine)


def test_ledger_replay_of_200_invoices(client: httpx.Client, server: http_replay.Server,
                                       invoices: list[positions.Invoice]) -> None:
    run = http_replay.http_replay(client, invoices, mode="ledger", prefix="L-")
    counts = run.result.outcome_counts()
    assert sum(counts.values()) == N == run.result.total
    assert counts["error"] == 0, run.result.errors
    assert set(counts) <= {"approve", "refer", "decline"}
    assert run.kinds == Counter(new=N)
    assert len(run.latencies) == N
    assert run.position_updates == N
    assert run.customers == {"L-" + inv.customer_id for inv in invoices}
    check_logged(client, run, "L-", invoices)
    if run.invoices_issued:  # the service has ledger events: every approved order invoiced
        assert run.invoices_issued == counts["approve"]
        assert run.overstated == 0, "the ledger's exposure must be the data's"
        # same position as the in-process replay, so the same decisions
        assert run.result.rows == in_process(invoices).rows
    # the ledger holds what the replay put there: the last customer's limit and facts
    last = invoices[-1]
    r = client.get(f"/v1/customers/L-{last.customer_id}")
    assert r.status_code == 200, r.text
    assert r.json()["facts"]["risk_class"] in ("low", "medium", "high")
    text = http_replay.render(run, url=server.url, policy_label="p", data_label="d")
    assert "Outcome mix" in text and "audit: ok" in text


def test_repeating_the_replay_is_idempotent(client: httpx.Client,
                                            invoices: list[positions.Invoice]) -> None:
    first = http_replay.http_replay(client, invoices[:20], mode="ledger", prefix="R-")
    again = http_replay.http_replay(client, invoices[:20], mode="ledger", prefix="R-")
    assert again.kinds == Counter(repeat=20)
    assert again.result.rows == first.result.rows
    assert again.audit is not None and again.audit["ok"]


def test_command_line_spawn(capsys: pytest.CaptureFixture[str]) -> None:
    assert http_replay.main(["--spawn", "--limit", "30", "--quiet", "--csv", str(CSV)]) == 0
    out = capsys.readouterr().out
    assert "Creditgate receivables replay over HTTP" in out
    assert "decisions answered: 30 of 30 (new 30)" in out
    assert "audit: ok, 30 records" in out
