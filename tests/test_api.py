"""The HTTP API through FastAPI's TestClient, against a real SQLite file store (tmp_path),
the real engine and the shipped ``policies.yaml``."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.app import ROUTES, JsonFormatter, create_app
from api.core.settings import Settings
from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import (
    POLICY,
    PROBLEM,
    ROOT,
    VALID,
    Api,
    _three_decisions,
    make_api,
    problem,
    sql,
)

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api


def test_request_too_large_is_413_before_parsing(tmp_path: Path) -> None:
    api = make_api(tmp_path, max_request_bytes=2048)
    try:
        api.customer()
        big = VALID + b', "facts": {"customer.risk_class": "' + b"x" * 4000 + b'"}}'
        problem(api.decide(raw=big), 413, "request_too_large")
        # no Content-Length (chunked): counted while reading
        r = api.client.post(
            "/v1/decisions",
            headers={**api.h("order_entry"), "Content-Type": "application/json"},
            content=iter([big[:1500], big[1500:]]),
        )
        problem(r, 413, "request_too_large")
        # invalid JSON that is too large is still a 413 (size is checked first)
        problem(api.decide(raw=b"{" * 5000), 413, "request_too_large")
        assert api.decide().status_code == 200
    finally:
        api.store.dispose()


def test_open_endpoints_need_no_key(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    r = api.client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"
    assert r.json()["policy"]["id"] == "trade-credit"
    api.customer()
    api.decide()
    api.decide(order_id="SO-2", amount=1.5)  # 422 counted as an error
    r = api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'creditgate_decisions_total{kind="new",outcome="approve"} 1.0' in text
    assert "creditgate_decision_seconds_count 1.0" in text
    assert (
        'creditgate_http_errors_total{method="POST",route="/v1/decisions",status="422"} 1.0' in text
    )
    assert 'creditgate_policy_info{policy_id="trade-credit"' in text


def test_unknown_route_is_a_problem(api: Api) -> None:
    problem(api.client.get("/v1/nothing"), 404, "not_found")
    problem(api.client.delete("/v1/decisions", headers=api.h()), 405, "method_not_allowed")


def test_openapi_lists_the_routes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for method, path, _ in ROUTES:
        assert method.lower() in spec["paths"][path]
    body = spec["paths"]["/v1/decisions"]["post"]["requestBody"]
    assert "amount" in body["content"]["application/json"]["schema"]["properties"]


# -- failing closed ------------------------------------------------------------------------


def _break_database(api: Api, tmp_path: Path) -> None:
    """Point the store at a database file that cannot be opened."""
    import sqlalchemy as sa

    api.store.engine.dispose()
    api.store.engine = sa.create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")


def test_database_unavailable_is_503_and_never_approve(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.customer()
    good_engine = api.store.engine
    key = api.keys["order_entry"]
    monkeypatch.setattr(api.store.keys, "role_of", lambda k: "order_entry" if k == key else None)
    _break_database(api, tmp_path)
    r = api.decide()
    body = problem(r, 503, "database_unavailable")
    assert "outcome" not in body and "approve" not in r.text.replace("not approved", "")
    assert r.headers["retry-after"]
    problem(api.client.get("/readyz"), 503, "not_ready")
    assert api.client.get("/healthz").status_code == 200
    # nothing was recorded
    api.store.engine = good_engine
    assert api.store.decisions.search() == ([], None)


def test_database_unavailable_during_auth_is_503(api: Api, tmp_path: Path) -> None:
    _break_database(api, tmp_path)
    problem(api.client.get("/v1/decisions", headers=api.h("reviewer")), 503, "database_unavailable")


def test_database_failure_inside_the_transaction_writes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    api.customer()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    from api.decisions import persistence

    monkeypatch.setattr(persistence, "append", fail)
    r = api.decide()
    problem(r, 503, "database_unavailable")
    monkeypatch.undo()
    assert api.store.customers.get("CUST-1")["open_orders"] == Decimal("0.00")
    assert api.store.decisions.search() == ([], None)
    assert api.decide().json()["kind"] == "new"


def test_engine_failure_is_no_decision(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import evaluate as ev

    api.customer()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ev.EvaluationError("engine", "the rule engine failed")

    monkeypatch.setattr(ev, "_match", broken)
    body = problem(api.decide(), 503, "no_decision")
    assert "not approved" in body["detail"]
    monkeypatch.undo()
    assert api.store.decisions.search() == ([], None)
    assert api.store.customers.get("CUST-1")["open_orders"] == Decimal("0.00")


def test_unexpected_error_is_500_without_details(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(api.store.customers, "get", boom)
    r = api.client.get("/v1/customers/CUST-1", headers=api.h())
    body = problem(r, 500, "internal_error")
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert body["errors"] == []


# -- logs ----------------------------------------------------------------------------------


def test_json_logs_carry_the_decision_id(api: Api) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("creditgate.api")
    logger.addHandler(handler)
    try:
        api.customer()
        d = api.decide().json()
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    decision = [x for x in lines if x["msg"] == "decision"]
    assert decision and decision[0]["decision_id"] == d["decision_id"]
    assert decision[0]["outcome"] == "approve" and decision[0]["order_id"] == "SO-1"
    request = [x for x in lines if x["msg"] == "request" and x["path"] == "/v1/decisions"]
    assert request[0]["decision_id"] == d["decision_id"] and request[0]["status"] == 200
    assert request[0]["request_id"]


# -- command line --------------------------------------------------------------------------


def test_cli_db_keys_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.cli import app

    db = tmp_path / "cli.db"
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", f"sqlite:///{db}")
    runner = CliRunner()
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "ok: database migrated from schema (none: new) to 0004_ledger_order_index\n"
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.stdout == "ok: database is up to date (schema 0004_ledger_order_index)\n"
    r = runner.invoke(app, ["keys", "create", "--role", "compliance", "--name", "auditor"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert key.startswith("cg_")
    r = runner.invoke(app, ["keys", "create", "--role", "root"])
    assert r.exit_code == 2 and "unknown role" in r.output

    api = Api(create_app(Settings(database_url=f"sqlite:///{db}", policy_path=str(POLICY))), db)
    try:
        assert api.client.get("/v1/audit/verify", headers={"X-API-Key": key}).json()["ok"]
        _three_decisions(api)
    finally:
        api.store.dispose()
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 0, r.output
    ((head_hash,),) = sql(db, "SELECT record_hash FROM decision_log WHERE seq = 3")
    assert r.stdout.splitlines() == [
        f"ok: decision log: 3 records, hash chain intact; head seq 3 record_hash {head_hash}",
        "ok: ledger events: 0 records, hash chain intact; no head",
        "ok: ledger consistency: 2 customers, 1 policy text; open orders match the open "
        "reservations, reservations match the ledger events, policy texts match their sha256 "
        "and every logged policy is stored",
    ]
    sql(db, "UPDATE decision_log SET caller = 'someone else' WHERE seq = 3")
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 1
    assert "BROKEN: decision log at seq 3: record_hash" in r.stderr
    sql(db, "DELETE FROM decision_log WHERE seq = 3")
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 1
    assert "at seq 3: log ends at seq 2 but the head says 3" in r.stderr


def test_cli_serve_is_registered() -> None:
    from api.cli import app

    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    assert "--port" in r.output and "--host" in r.output


def test_request_id_is_echoed(api: Api) -> None:
    r = api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert api.client.get("/healthz").headers["x-request-id"]


# -- OpenAPI document, offline docs, problem codes -----------------------------------------

OPS_PATHS = ("/healthz", "/readyz", "/metrics")


def test_openapi_declares_both_key_schemes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"] == {
        **schemes["apiKeyHeader"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    for method, path, _ in ROUTES:
        op = spec["paths"][path][method.lower()]
        # either scheme is enough: two requirements, not one with both
        assert op["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}], (method, path)
    for path in OPS_PATHS:
        assert "security" not in spec["paths"][path]["get"], path


def test_openapi_problem_responses(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    problem = schemas["ProblemDetails"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code", "errors"}
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/ProblemError"}
    assert set(schemas["ProblemError"]["required"]) == {"path", "code", "message"}
    ref = {"$ref": "#/components/schemas/ProblemDetails"}
    responses = spec["paths"]["/v1/decisions"]["post"]["responses"]
    for status in ("401", "403", "404", "409", "413", "422", "503"):
        assert responses[status]["content"] == {PROBLEM: {"schema": ref}}, status
    for method, path, _ in ROUTES:
        responses = spec["paths"][path][method.lower()]["responses"]
        for status in ("401", "403", "503"):
            assert responses[status]["content"][PROBLEM]["schema"] == ref, (method, path)
        # FastAPI's own 422 schema (HTTPValidationError) is not what the service sends
        assert "HTTPValidationError" not in json.dumps(responses), (method, path)
    upload = spec["paths"]["/v1/customers/import"]["post"]["responses"]
    assert {"413", "415", "422"} <= set(upload)
    assert "401" not in spec["paths"]["/healthz"]["get"]["responses"]
    assert spec["paths"]["/readyz"]["get"]["responses"]["503"]["content"][PROBLEM]


def test_problem_bodies_fit_the_declared_schema(api: Api) -> None:
    from api.core.problems import ProblemDetails

    api.customer()
    for r in (
        api.client.get("/v1/policy"),
        api.client.get("/v1/policy", headers=api.h("order_entry")),
        api.decide(amount="-1.234"),
        api.client.get("/v1/customers/NOPE", headers=api.h()),
        api.client.post("/v1/customers/import", headers=api.h(), json={"a": 1}),
    ):
        assert r.status_code >= 400
        ProblemDetails.model_validate(r.json(), strict=True)


def test_docs_work_offline(api: Api) -> None:
    import re

    r = api.client.get("/docs")
    assert r.status_code == 200
    html = r.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    assert "http://" not in html and "https://" not in html  # no CDN, no absolute URL
    for url in assets:
        got = api.client.get(url)
        assert got.status_code == 200, url
        assert len(got.content) > 100, url
    assert "SwaggerUIBundle" in api.client.get(assets[-1]).text
    assert "'/openapi.json'" in html
    # ReDoc the same way, without Google fonts
    html = api.client.get("/redoc").text
    scripts = re.findall(r'src="([^"]+)"', html)
    assert scripts and all(s.startswith("/docs-assets/") for s in scripts)
    assert "http" not in html
    assert api.client.get(scripts[0]).status_code == 200
    # neither the pages nor the files are in the OpenAPI document
    paths = api.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


def test_unsupported_media_type_title(api: Api) -> None:
    body = problem(
        api.client.post("/v1/customers/import", headers=api.h(), json={"a": 1}),
        415,
        "unsupported_media_type",
    )
    assert "JSON" not in body["title"]
    assert "text/csv" in body["detail"]


def _problem_codes_in_api() -> dict[str, set[str]]:
    """Every problem ``code`` and field ``errors[].code`` literal in ``api/`` (by file)."""
    import re

    from api.core import problems

    patterns = [
        r'"code":\s*"([a-z_]+)"',  # {"path": ..., "code": "ledger_conflict", ...}
        r'Problem\(\s*"([a-z_]+)"',  # Problem("conflict", ...)
        r'PydanticCustomError\(\s*"([a-z_]+)"',  # field codes of custom validators
        r'\(\s*"([a-z_]+)" if \w+ else "([a-z_]+)"',  # Problem("invalid_json" if ... else ...)
        r'_STATUS_CODES\.get\([^,]+,\s*"([a-z_]+)"\)',  # the fallback code
    ]
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "api").rglob("*.py")):
        text = path.read_text()
        for pattern in patterns:
            for match in re.finditer(pattern, text):
                for code in filter(None, match.groups()):
                    found.setdefault(code, set()).add(path.name)
    tables = [problems.CODES, problems._STATUS_CODES.values(), problems._PYDANTIC_CODES.values()]
    for table in tables:
        for code in table:
            found.setdefault(code, set()).add("problems.py")
    return found


def test_every_problem_code_is_documented() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## HTTP service", 1)[1].split("## Numbers and rounding", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", section))
    found = _problem_codes_in_api()
    # the patterns do find the codes (a refactor that hides them must update the patterns)
    expected = {"ledger_conflict", "order_conflict", "invalid_row", "not_accepted", "error"}
    assert expected | {"fx_rate_missing", "unknown_currency", "unsupported_media_type"} <= set(
        found
    )
    undocumented = {code: sorted(files) for code, files in found.items() if code not in documented}
    assert undocumented == {}, "add these codes to README's HTTP error code tables"
    # and every code of the problem table has its status in the README's table
    table = readme.split("### Error codes", 1)[1].split("## Requests", 1)[0]
    from api.core.problems import CODES

    for code, (status, _title) in CODES.items():
        row = re.search(rf"^\| `{code}` \| ([^|]+) \|", table, re.M)
        assert row, code
        assert str(status) in row.group(1), (code, status, row.group(1))


@pytest.mark.parametrize(
    "value, code",
    [
        (None, "null_value"),
        (0, "invalid_type"),
        (1764374400, "invalid_type"),
        ("20261129", "invalid_value"),
        ("2026-11-29T00:00:00", "invalid_value"),
        ("2026-11-29 ", "invalid_value"),
        ("2026-02-30", "invalid_value"),
        ("29.11.2026", "invalid_value"),
        (True, "invalid_type"),
    ],
)
@pytest.mark.dates
def test_order_date_and_rate_dates_are_iso_strings_only(api: Api, value: Any, code: str) -> None:
    api.customer()
    body = problem(api.decide(order_date=value), 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("order_date", code)], body
    message = body["errors"][0]["message"]
    assert "Datetime" not in message and "pydantic" not in message
    assert ("YYYY-MM-DD" in message) or ("calendar date" in message) or ("null" in message)
    assert api.store.decisions.search()[0] == []
    rates = {"base": "EUR", "rates": [{"currency": "USD", "rate": "0.92", "as_of": value}]}
    body = problem(api.client.put("/v1/fx-rates", headers=api.h(), json=rates), 422)
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("rates[0].as_of", code)], body


@pytest.mark.dates
def test_explicit_null_is_null_value_in_every_body(api: Api) -> None:
    api.customer()
    body = problem(api.decide(facts=None, amount=None), 422, "invalid_request")
    assert {(e["path"], e["code"]) for e in body["errors"]} == {
        ("facts", "null_value"),
        ("amount", "null_value"),
    }
    r = api.client.post(
        "/v1/customers/CUST-1/events",
        headers=api.h("order_entry"),
        json={
            "event_id": "E1",
            "type": "payment_received",
            "amount": "1.00",
            "order_id": None,
            "currency": "EUR",
        },
    )
    body = problem(r, 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("order_id", "null_value")]
    r = api.client.put(
        "/v1/customers/CUST-2",
        headers=api.h(),
        json={"currency": "EUR", "credit_limit": "1.00", "days_past_due": None},
    )
    body = problem(r, 422, "invalid_request")
    assert [(e["path"], e["code"]) for e in body["errors"]] == [("days_past_due", "null_value")]
    # a valid ISO date is still accepted
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    assert api.decide(order_date=today).status_code == 200


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "application/merge-patch+json",
        "multipart/form-data",
    ],
)
@pytest.mark.dates
def test_json_bodies_need_application_json(api: Api, ctype: str | None) -> None:
    api.customer()
    headers = {"Content-Type": ctype} if ctype else {}
    customer = {"currency": "EUR", "credit_limit": "1.00"}
    order = json.loads(VALID + b"}")
    rates = {"base": "EUR", "rates": [{"currency": "USD", "rate": "0.92", "as_of": "2026-11-29"}]}
    event = {"event_id": "E1", "type": "payment_received", "amount": "1.00", "currency": "EUR"}
    for method, url, role, payload in (
        ("POST", "/v1/decisions", "order_entry", order),
        ("PUT", "/v1/customers/CUST-2", "admin", customer),
        ("POST", "/v1/customers/CUST-1/events", "order_entry", event),
        ("PUT", "/v1/fx-rates", "admin", rates),
    ):
        r = api.client.request(
            method, url, headers={**api.h(role), **headers}, content=json.dumps(payload).encode()
        )
        body = problem(r, 415, "unsupported_media_type")
        assert "application/json" in body["detail"], body
    assert api.store.decisions.search()[0] == []
    assert api.store.customers.get("CUST-2") is None


@pytest.mark.parametrize(
    "ctype",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"],
)
def test_application_json_with_utf8_charset_is_accepted(api: Api, ctype: str) -> None:
    api.customer()
    raw = VALID + b"}"
    r = api.client.post(
        "/v1/decisions", headers={**api.h("order_entry"), "Content-Type": ctype}, content=raw
    )
    assert r.status_code == 200, r.text
