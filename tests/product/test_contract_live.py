"""The OpenAPI document as a contract, proven against a live ``creditgate serve`` (SQLite,
the shipped policy, seeded customers and rates; tests/helpers/live.py):

- a Python client generated from the server's ``/openapi.json`` with openapi-python-client
  decides an order, reads it back and replays it, with exact values;
- schemathesis runs every operation with all its checks, in all its phases (the examples,
  the coverage of each constraint, fuzzing with valid and invalid data, stateful sequences
  along the document's links) and finds no failure. The run is bounded (examples per
  operation, a fixed seed); ``test_schemathesis_long`` (marked slow) runs it longer with a
  random seed.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.live import Live, live_service

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
        return found
    return str(path)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_service(tmp_path) as service:
        yield service


# -- a generated client ---------------------------------------------------------------------

#: openapi-python-client's settings: the CSV import's body is sent as bytes (the generator
#: has no text/csv of its own; the request still says Content-Type: text/csv)
GENERATOR_CONFIG = """\
package_name_override: creditgate_client
content_type_overrides:
  text/csv: application/octet-stream
post_hooks: []
"""


def generate_client(live: Live, out: Path) -> Any:
    """The client openapi-python-client generates from the live server's document, imported
    (package ``creditgate_client`` in ``out``). The generator must not skip anything."""
    spec = httpx.get(f"{live.url}/openapi.json", timeout=30).json()
    (out / "openapi.json").write_text(json.dumps(spec))
    (out / "config.yaml").write_text(GENERATOR_CONFIG)
    r = subprocess.run(
        [
            _tool("openapi-python-client"),
            "generate",
            "--path",
            str(out / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(out / "creditgate_client"),
            "--config",
            str(out / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
    )
    output = r.stdout + r.stderr
    assert r.returncode == 0, output
    assert "warning" not in output.lower() and "error" not in output.lower(), output
    sys.path.insert(0, str(out))
    try:
        for name in [m for m in sys.modules if m.startswith("creditgate_client")]:
            del sys.modules[name]
        return importlib.import_module("creditgate_client")
    finally:
        sys.path.remove(str(out))


def test_generated_client_decides_reads_and_replays(live: Live, tmp_path: Path) -> None:
    client_pkg = generate_client(live, tmp_path)
    models = importlib.import_module("creditgate_client.models")
    decisions = importlib.import_module("creditgate_client.api.decisions")
    customers = importlib.import_module("creditgate_client.api.customers")
    for name in ("decide_order", "get_decision", "replay_decision"):
        importlib.import_module(f"creditgate_client.api.decisions.{name}")
    for name in ("get_customer", "record_ledger_event", "import_customers"):
        importlib.import_module(f"creditgate_client.api.customers.{name}")
    types = importlib.import_module("creditgate_client.types")

    def as_role(role: str) -> Any:
        return client_pkg.AuthenticatedClient(
            base_url=live.url, token=live.keys[role], raise_on_unexpected_status=True
        )

    order_entry, reviewer, compliance = as_role("order_entry"), as_role("reviewer"), as_role(
        "compliance"
    )

    # decide: the worked example, an order over the credit limit
    body = models.DecisionRequest(
        order_id="SO-2026-1004",
        customer_id="CUST-0004",
        amount="10000.00",
        currency=models.DecisionRequestCurrency.EUR,
        payment_term_days=30,
    )
    r = decisions.decide_order.sync_detailed(client=order_entry, body=body)
    assert r.status_code == 200, r.content
    answer = r.parsed
    assert isinstance(answer, models.DecisionAnswer)
    assert answer.kind == models.DecisionAnswerKind.NEW
    assert answer.outcome == models.DecisionAnswerOutcome.REFER
    assert (answer.score, answer.tier, answer.currency) == (450, "A", "EUR")
    # money as exact strings, never floats
    assert answer.order_amount == "10000.00"
    assert answer.deposit_amount == "5000.00" and answer.deposit_pct == "50.00"
    assert answer.credit_limit == "50000.00"
    assert answer.exposure_after == "55000.00"
    assert answer.available_credit == "-5000.00"
    assert Decimal(answer.credit_limit) - Decimal(answer.exposure_after) == Decimal(
        answer.available_credit
    )
    assert [x.code for x in answer.reasons] == [
        "REF_OVER_LIMIT",
        "DEP_OVER_LIMIT",
        "SC_HIGH_UTILISATION",
    ]
    assert answer.escalation.level == "credit_analyst"
    assert answer.escalation.basis_amount == "10000.00"
    assert answer.approved_payment_term_days == 30
    assert isinstance(answer.fx, types.Unset)  # an order in the policy currency
    matched = {rule.rule_id for rule in answer.trail.rules if rule.matched}
    assert {"REF_OVER_LIMIT", "DEP_COVER_EXCESS"} <= matched

    # the same order again: the stored decision
    again = decisions.decide_order.sync(client=order_entry, body=body)
    assert again.kind == models.DecisionAnswerKind.REPEAT
    assert again.decision_id == answer.decision_id

    # read it back from the log
    record = decisions.get_decision.sync(client=reviewer, decision_id=answer.decision_id)
    assert isinstance(record, models.DecisionRecord)
    assert (record.decision_id, record.order_id, record.customer_id) == (
        answer.decision_id,
        "SO-2026-1004",
        "CUST-0004",
    )
    assert record.kind == models.DecisionRecordKind.NEW
    assert record.outcome == models.DecisionRecordOutcome.REFER
    assert record.policy_sha256 == answer.policy.sha256 and len(record.record_hash) == 64
    assert record.decision.order_amount == "10000.00"
    assert record.decision.exposure_after == "55000.00"
    assert record.decision.deposit_amount == "5000.00"
    assert record.decision.to_dict() == {k: v for k, v in answer.to_dict().items() if k != "kind"}
    order = record.request.additional_properties["order"].additional_properties
    assert order == {
        "amount": "10000.00",
        "currency": "EUR",
        "id": "SO-2026-1004",
        "payment_term_days": 30,
    }
    assert record.created_at.tzinfo is not None

    # replay it under the policy text that made it
    replay = decisions.replay_decision.sync(client=compliance, decision_id=answer.decision_id)
    assert isinstance(replay, models.ReplayResult)
    assert replay.identical is True and replay.differences == []
    assert replay.stored_outcome == replay.replayed_outcome
    assert replay.stored_outcome.value == "refer"
    assert replay.policy.sha256 == answer.policy.sha256

    # an order in USD: converted with the seeded rate, the conversion in fx
    usd = decisions.decide_order.sync(
        client=order_entry,
        body=models.DecisionRequest(
            order_id="SO-2026-1005",
            customer_id="CUST-0001",
            amount="1200.00",
            currency=models.DecisionRequestCurrency.USD,
            payment_term_days=30,
        ),
    )
    assert usd.outcome == models.DecisionAnswerOutcome.APPROVE
    assert (usd.fx.original_amount, usd.fx.rate, usd.fx.converted_amount) == (
        "1200.00",
        "0.92",
        "1104.00",
    )
    assert Decimal(usd.fx.original_amount) * Decimal(usd.fx.rate) == Decimal(usd.order_amount)

    # a ledger event through the discriminated union, and a problem answer
    admin = as_role("admin")
    event = customers.record_ledger_event.sync(
        client=as_role("finance"),  # payments are posted by finance (separation of duties)
        customer_id="CUST-0004",
        body=models.PaymentReceived(
            event_id="PAY-2026-0001",
            type_="payment_received",
            amount="5000.00",
            currency=models.PaymentReceivedCurrency.EUR,
        ),
    )
    assert isinstance(event, models.EventResult) and event.replayed is False
    assert event.effect.open_receivables == "-5000.00"
    assert event.customer.open_receivables == "40000.00"
    unknown = decisions.decide_order.sync_detailed(
        client=as_role("order_entry"),
        body=models.DecisionRequest(
            order_id="SO-X",
            customer_id="NOBODY",
            amount=100,
            currency=models.DecisionRequestCurrency.EUR,
            payment_term_days=30,
        ),
    )
    assert unknown.status_code == 404
    assert isinstance(unknown.parsed, models.ProblemDetails)
    assert unknown.parsed.code == "unknown_customer"

    # the CSV import (its body sent as bytes, Content-Type text/csv)
    imported = customers.import_customers.sync(
        client=admin,
        body=types.File(
            payload=b"customer_id,currency,credit_limit\nCUST-GEN-1,EUR,1500.00\n",
            mime_type="text/csv",
        ),
    )
    assert imported.imported == 1
    position = customers.get_customer.sync(client=order_entry, customer_id="CUST-GEN-1")
    assert position.credit_limit == "1500.00" and position.exposure == "0.00"


# -- schemathesis ---------------------------------------------------------------------------

#: the operations whose valid-looking requests may be refused by what the policy or the
#: ledger says (422: e.g. a currency that is not the policy's, a fact the policy does not
#: know, an order date out of the window, an event in another currency than the
#: customer's, a rate of the base currency, a CSV with unknown columns). The document
#: declares 422 for each of them; the other operations must accept every valid request.
STATE_DEPENDENT_422 = [
    "decideOrder",
    "importCustomers",
    "importCustomersDeprecated",
    "recordLedgerEvent",
    "putFxRates",
]

SCHEMATHESIS_CONFIG = """\
base-url = "{url}"
headers = {{ Authorization = "Bearer {key}" }}
workers = 1

[generation]
max-examples = {examples}
mode = "all"
# the key is sent in Authorization; no generated X-API-Key next to it
with-security-parameters = false
database = "none"

[[operations]]
include-operation-id = {state_dependent}
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "401", "403", "404", "409", "422", "429", "5xx",
]

# a customer write is also conditional: a generated ETag is stale (412), a PUT without
# If-Match / If-None-Match is refused (428)
[[operations]]
include-operation-id = ["putCustomer", "patchCustomer"]
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "401", "403", "404", "409", "412", "422", "428", "429", "5xx",
]
"""


def run_schemathesis(live: Live, out: Path, *, examples: int, seed: int | None) -> dict[str, Any]:
    """``st run`` against ``live`` with every check, the four phases and both positive and
    negative data; returns what it printed, its exit code and its duration."""
    config = out / "schemathesis.toml"
    config.write_text(
        SCHEMATHESIS_CONFIG.format(
            url=live.url,
            key=live.keys["admin"],
            examples=examples,
            state_dependent=json.dumps(STATE_DEPENDENT_422),
        )
    )
    command = [
        _tool("st"),
        "--config-file",
        str(config),
        "run",
        f"{live.url}/openapi.json",
        "--checks",
        "all",
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--report",
        "junit",
        "--report-dir",
        str(out / "report"),
        "--no-color",
    ]
    if seed is not None:
        command += ["--seed", str(seed)]
    start = time.monotonic()
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    r = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=out, env=env)
    return {
        "output": r.stdout + r.stderr,
        "returncode": r.returncode,
        "seconds": time.monotonic() - start,
    }


def _check(result: dict[str, Any], live: Live) -> None:
    output = result["output"]
    print(output[-3000:])  # the summary: operations, phases, test cases, seed
    assert result["returncode"] == 0, output[-20000:]
    assert "21 selected / 21 total" in output, output[-3000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in output, (phase, output[-3000:])
    # the service never failed inside: no 500, no traceback in its log
    assert "Traceback" not in live.server.log_tail(10_000_000)


def test_schemathesis_finds_no_failure(live: Live, tmp_path: Path) -> None:
    result = run_schemathesis(live, tmp_path, examples=30, seed=20261129)
    _check(result, live)
    assert result["seconds"] < 240


@pytest.mark.slow
def test_schemathesis_long(live: Live, tmp_path: Path) -> None:
    """The same, ten times the examples per operation and a new seed every run (printed
    in the summary, ``--seed`` reproduces it)."""
    _check(run_schemathesis(live, tmp_path, examples=300, seed=None), live)
