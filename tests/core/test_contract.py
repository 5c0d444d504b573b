"""The OpenAPI document as a contract: every ``$ref`` resolves, stable operation ids, an
example for each operation that fits its schema, response schemas that the real answers fit
(masked reads included), and request schemas that say exactly what the body parsers accept
(on a SQLite file; tests/helpers/sqlite_api.py). The live checks (a generated client,
schemathesis) are in tests/product/test_contract_live.py."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic_core import PydanticCustomError

from api.app import ROUTES
from api.core import schemas
from api.core.bodies import parse_customer_id, parse_identifier, parse_money
from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import POLICY, Api

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api

OPERATION_IDS = {
    ("POST", "/v1/decisions"): "decideOrder",
    ("GET", "/v1/decisions"): "listDecisions",
    ("GET", "/v1/decisions/export"): "exportDecisions",
    ("GET", "/v1/decisions/{decision_id}"): "getDecision",
    ("GET", "/v1/decisions/{decision_id}/replay"): "replayDecision",
    ("PUT", "/v1/customers/{customer_id}"): "putCustomer",
    ("GET", "/v1/customers/{customer_id}"): "getCustomer",
    ("PATCH", "/v1/customers/{customer_id}"): "patchCustomer",
    ("GET", "/v1/customers/{customer_id}/history"): "getCustomerHistory",
    ("POST", "/v1/customer-imports"): "importCustomers",
    ("POST", "/v1/customers/import"): "importCustomersDeprecated",
    ("POST", "/v1/customers/{customer_id}/events"): "recordLedgerEvent",
    ("PUT", "/v1/fx-rates"): "putFxRates",
    ("GET", "/v1/audit/verify"): "verifyAudit",
    ("GET", "/v1/policy"): "getPolicy",
    ("GET", "/v1/orders/{order_id}"): "getOrder",
    ("GET", "/v1/ledger-events"): "listLedgerEvents",
    ("GET", "/v1/ledger-events/export"): "exportLedgerEvents",
    ("GET", "/healthz"): "getHealth",
    ("GET", "/readyz"): "getReadiness",
    ("GET", "/metrics"): "getMetrics",
}


def _spec(api: Api) -> dict[str, Any]:
    return api.client.get("/openapi.json").json()


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator of ``schema`` whose ``#/components/...`` references
    resolve in ``spec`` (formats checked)."""
    return jsonschema_rs.Draft202012Validator(
        {**schema, "components": spec["components"]}, validate_formats=True
    )


def _response_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return spec["paths"][path][method.lower()]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]


def conforms(spec: dict[str, Any], method: str, path: str, body: Any) -> None:
    errors = list(_validator(spec, _response_schema(spec, method, path)).iter_errors(body))
    assert not errors, (method, path, [str(e)[:300] for e in errors[:3]])


def test_every_ref_resolves(api: Api) -> None:
    spec = _spec(api)
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert len(refs) > 50
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = spec
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
            node = node[part]
    assert spec["openapi"].startswith("3.1")


def test_operation_ids_are_stable(api: Api) -> None:
    spec = _spec(api)
    found = {
        (method.upper(), path): op["operationId"]
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    }
    assert found == OPERATION_IDS
    assert {(m, p) for m, p, _ in ROUTES} <= set(found)


def test_every_operation_has_examples_that_fit(api: Api) -> None:
    spec = _spec(api)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = (method, path)
            body = op.get("requestBody")
            if body is not None:
                for media in body["content"].values():
                    assert media.get("examples"), where
                    check = _validator(spec, media["schema"])
                    for name, example in media["examples"].items():
                        assert check.is_valid(example["value"]), (where, name)
            ok = op["responses"]["200"]
            assert ok.get("content"), where
            for media_type, media in ok["content"].items():
                assert media.get("examples"), (where, media_type)
                check = _validator(spec, media["schema"])
                for name, example in media["examples"].items():
                    errors = [str(e)[:200] for e in check.iter_errors(example["value"])]
                    assert not errors, (where, name, errors)
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    assert param.get("examples"), (where, param["name"])
                for example in param.get("examples", {}).values():
                    assert _validator(spec, param["schema"]).is_valid(example["value"])


def test_responses_are_declared(api: Api) -> None:
    spec = _spec(api)
    paths = spec["paths"]
    decide = paths["/v1/decisions"]["post"]["responses"]
    # the state-dependent answers: unknown customer, conflict, no rate, unavailable
    assert {"404", "409", "422", "500", "503"} <= set(decide)
    assert decide["200"]["links"]["getDecision"]["operationId"] == "getDecision"
    assert paths["/v1/decisions/{decision_id}"]["get"]["responses"]["404"]
    for export in ("/v1/decisions/export", "/v1/ledger-events/export"):
        assert set(paths[export]["get"]["responses"]["200"]["content"]) == {
            "text/csv",
            "application/x-ndjson",
        }
    for read in ("/v1/ledger-events", "/v1/ledger-events/export"):
        # a stored event that cannot be read: 500 unreadable_record
        assert {"422", "500"} <= set(paths[read]["get"]["responses"]), read
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}
    assert metrics["text/plain"]["schema"] == {"type": "string"}
    event = spec["components"]["schemas"]["LedgerEvent"]
    assert event["discriminator"]["propertyName"] == "type"
    assert set(event["discriminator"]["mapping"]) == {
        "order_cancelled",
        "invoice_issued",
        "payment_received",
        "credit_note",
    }
    cancelled = spec["components"]["schemas"]["OrderCancelled"]
    assert set(cancelled["required"]) == {"event_id", "type", "order_id"}
    assert "amount" not in cancelled["properties"] and cancelled["additionalProperties"] is False
    currency = spec["components"]["schemas"]["DecisionRequest"]["properties"]["currency"]
    assert {"EUR", "JPY", "KWD"} <= set(currency["enum"]) and "EURO" not in currency["enum"]
    order_date = spec["components"]["schemas"]["DecisionRequest"]["properties"]["order_date"]
    assert order_date["format"] == "date"


def _accepts(parse: Any, value: Any) -> bool:
    try:
        parse(value)
        return True
    except PydanticCustomError:
        return False


def test_identifier_patterns_are_the_parsers() -> None:
    """Every character at the start, inside and at the end of an id: the pattern (read as
    a full match, as JSON Schema does) accepts exactly what the parser accepts."""
    ident = re.compile(schemas.IDENTIFIER_PATTERN)
    customer = re.compile(schemas.CUSTOMER_ID_PATTERN)
    chars = [chr(c) for c in range(0x3100)]
    chars += ["\ufeff", "\ue000", "\uffff", "\U0001f600", "\U00010000"]
    samples = ["", ".", "..", "...", "a" * 200, "a" * 201, " a", "a ", "a b"]
    for c in chars:
        samples += [c, "a" + c, c + "a", "a" + c + "a", c + c, "." + c, c + "."]
    for value in samples:
        for parse, pattern in ((parse_identifier, ident), (parse_customer_id, customer)):
            assert _accepts(parse, value) == bool(pattern.fullmatch(value)), (
                parse.__name__,
                repr(value),
            )
    # the pattern is written in the subset every engine reads alike
    for pattern in (schemas.IDENTIFIER_PATTERN, schemas.CUSTOMER_ID_PATTERN):
        assert "(?=" not in pattern and "(?!" not in pattern and "\\s" not in pattern
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})


def _money_pattern(schema: dict[str, Any]) -> re.Pattern[str]:
    return re.compile(schema["anyOf"][0]["pattern"])


def test_money_patterns_are_the_parsers() -> None:
    from decimal import Decimal

    from api.fx.models import _rate_value

    money = _money_pattern(schemas.MONEY_SCHEMA)
    non_negative = _money_pattern(schemas.NON_NEGATIVE_MONEY_SCHEMA)
    positive = _money_pattern(schemas.POSITIVE_MONEY_SCHEMA)
    rate = _money_pattern(schemas.RATE_SCHEMA)
    samples = ["".join(t) for n in range(1, 7) for t in itertools.product("0159.+-", repeat=n)]
    samples += [
        "999999999999999",
        "1000000000000000",
        "0001000000000000000",
        "000999999999999999.99",
        "-999999999999999.9999",
        "0.0000000001",
        "0.00000000001",
        "0.000000000100",
        "999999999.5",
        "1000000000",
        "00999999999.0000000001",
        "1e5",
        " 1",
        "١",
        "1" * 41,
    ]
    for value in samples:
        accepted = _accepts(parse_money, value) and len(value) <= 40
        assert accepted == bool(money.fullmatch(value)), value
        parsed = parse_money(value) if accepted else None
        assert (accepted and parsed >= 0) == bool(non_negative.fullmatch(value)), value
        assert (accepted and parsed > 0) == bool(positive.fullmatch(value)), value
        assert _accepts(_rate_value, value) == bool(rate.fullmatch(value)), value
    assert Decimal(10) ** 15 - 1 == schemas.MONEY_SCHEMA["anyOf"][1]["maximum"]


def test_customer_id_path_parameter_is_documented(api: Api) -> None:
    spec = _spec(api)
    for method in ("get", "put", "patch"):
        params = spec["paths"]["/v1/customers/{customer_id}"][method]["parameters"]
        [param] = [p for p in params if p["in"] == "path"]
        assert param["schema"]["pattern"] == schemas.CUSTOMER_ID_PATTERN
        assert param["schema"]["not"] == {"enum": ["import"]}
        assert param["schema"]["maxLength"] == 200


# -- the real answers fit the declared schemas ---------------------------------------------


def _sensitive_policy(tmp_path: Path) -> Path:
    """The shipped policy with the order amount, the payment term and the credit limit
    marked sensitive: every field masking can touch is masked."""
    text = POLICY.read_text()
    for old in (
        "order.amount:",
        "order.payment_term_days:",
        "customer.credit_limit:",
    ):
        match = re.search(rf"^(\s*{re.escape(old)}\s*\{{)", text, re.M)
        assert match, old
        text = text.replace(match.group(1), match.group(1) + "sensitive: true, ", 1)
    path = tmp_path / "policy-sensitive.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
def test_answers_fit_their_schemas(tmp_path: Path, masked: bool) -> None:
    from api.app import create_app
    from api.core.settings import Settings

    policy = _sensitive_policy(tmp_path) if masked else POLICY
    db = tmp_path / "creditgate.db"
    a = Api(create_app(Settings(database_url=f"sqlite:///{db}", policy_path=str(policy))), db)
    try:
        spec = _spec(a)
        today = datetime.now(UTC).date().isoformat()
        put = a.client.put(
            "/v1/customers/CUST-0004",
            headers={**a.h(), "If-None-Match": "*"},
            json={
                "currency": "EUR",
                "credit_limit": "50000.00",
                "open_receivables": "45000.00",
                "facts": {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.5"},
            },
        )
        conforms(spec, "PUT", "/v1/customers/{customer_id}", put.json())
        rates = a.client.put(
            "/v1/fx-rates",
            headers=a.h(),
            json={"base": "EUR", "rates": [{"currency": "USD", "rate": "0.92", "as_of": today}]},
        )
        conforms(spec, "PUT", "/v1/fx-rates", rates.json())
        decided = []
        for order in (
            {"order_id": "SO-1", "amount": "10000.00", "currency": "EUR"},  # refer
            {"order_id": "SO-2", "amount": "100.00", "currency": "USD"},  # converted
            {"order_id": "SO-3", "amount": "10.00", "currency": "EUR"},  # approve
            {"order_id": "SO-1", "amount": "10000.00", "currency": "EUR"},  # repeat
        ):
            r = a.decide(customer_id="CUST-0004", payment_term_days=30, **order)
            assert r.status_code == 200, r.text
            conforms(spec, "POST", "/v1/decisions", r.json())
            decided.append(r.json())
        assert [d["kind"] for d in decided] == ["new", "new", "new", "repeat"]
        assert "fx" in decided[1] and "fx" not in decided[0]
        reader = a.h("compliance")
        for d in decided:
            record = a.client.get(f"/v1/decisions/{d['decision_id']}", headers=reader).json()
            conforms(spec, "GET", "/v1/decisions/{decision_id}", record)
            if masked:
                assert record["decision"]["order_amount"] == "***"
                assert record["decision"]["requested_payment_term_days"] == "***"
                assert record["request"]["order"]["amount"] == "***"
            replay = a.client.get(f"/v1/decisions/{d['decision_id']}/replay", headers=reader)
            conforms(spec, "GET", "/v1/decisions/{decision_id}/replay", replay.json())
        if masked:
            record = a.client.get(f"/v1/decisions/{decided[0]['decision_id']}", headers=reader)
            assert record.json()["decision"]["escalation"]["basis_amount"] == "***"
            record = a.client.get(f"/v1/decisions/{decided[1]['decision_id']}", headers=reader)
            assert record.json()["fx"]["original_amount"] == "***"
        page = a.client.get("/v1/decisions?limit=2", headers=reader).json()
        assert page["next_cursor"] is not None
        conforms(spec, "GET", "/v1/decisions", page)
        for event in (
            {"event_id": "E1", "type": "invoice_issued", "order_id": "SO-3", "amount": "10.00"},
            {"event_id": "E2", "type": "payment_received", "amount": "100000.00"},
            {"event_id": "E3", "type": "order_cancelled", "order_id": "SO-2"},
            {"event_id": "E2", "type": "payment_received", "amount": "100000.00"},  # replayed
        ):
            if "amount" in event:
                event["currency"] = "EUR"
            r = a.client.post("/v1/customers/CUST-0004/events", headers=a.h(), json=event)
            assert r.status_code == 200, r.text
            conforms(spec, "POST", "/v1/customers/{customer_id}/events", r.json())
        page = a.client.get("/v1/ledger-events?limit=2", headers=a.h("finance")).json()
        assert page["next_cursor"] is not None  # E3 (no amount), E2; E1 on the next page
        assert page["items"][0]["amount"] is None
        conforms(spec, "GET", "/v1/ledger-events", page)
        page = a.client.get(f"/v1/ledger-events?cursor={page['next_cursor']}", headers=reader)
        conforms(spec, "GET", "/v1/ledger-events", page.json())
        for order_id in ("SO-1", "SO-2", "SO-3"):  # refer; approve cancelled; invoiced
            r = a.client.get(f"/v1/orders/{order_id}", headers=a.h("order_entry"))
            assert r.status_code == 200, r.text
            conforms(spec, "GET", "/v1/orders/{order_id}", r.json())
            if masked and order_id != "SO-1":
                assert r.json()["approved_amount"] == "***"
        imported = a.client.post(
            "/v1/customer-imports",
            headers={**a.h(), "Content-Type": "text/csv"},
            content=b"customer_id,currency,credit_limit\nCUST-9,EUR,10.00\n",
        )
        conforms(spec, "POST", "/v1/customer-imports", imported.json())
        for method, path, role in (
            ("GET", "/v1/customers/{customer_id}", "order_entry"),
            ("GET", "/v1/audit/verify", "compliance"),
            ("GET", "/v1/policy", "compliance"),
            ("GET", "/healthz", "admin"),
            ("GET", "/readyz", "admin"),
        ):
            url = path.replace("{customer_id}", "CUST-0004")
            r = a.client.request(method, url, headers=a.h(role))
            assert r.status_code == 200, r.text
            conforms(spec, method, path, r.json())
    finally:
        a.store.dispose()


def test_date_patterns_are_the_parsers() -> None:
    """Every YYYY-MM-DD of years around the edges and the leap-year rules: the pattern
    matches exactly the dates ``parse_date`` (``date.fromisoformat``) accepts; every date
    and time the ``from`` / ``to`` pattern matches is read by the list's parser."""
    from api.core.bodies import parse_date
    from api.core.params import parse_when

    date_pattern = re.compile(schemas.DATE_SCHEMA["pattern"])
    years = [0, 1, 4, 100, 400, 1896, 1900, 1999, 2000, 2024, 2026, 2100, 2400, 9996, 9999]
    for year in years:
        for month in range(0, 14):
            for day in (0, 1, 9, 10, 19, 28, 29, 30, 31, 32):
                value = f"{year:04d}-{month:02d}-{day:02d}"
                assert _accepts(parse_date, value) == bool(date_pattern.fullmatch(value)), value
    when = re.compile(schemas.DATE_OR_DATETIME_PATTERN)
    for value in (
        "2026-11-29",
        "2026-11-29T10:00",
        "2026-11-29T10:00:59",
        "2026-11-29T23:59:59.123456789Z",
        "2026-11-29T00:00:00+05:30",
        "2028-02-29T00:00-23:59",
    ):
        assert when.fullmatch(value), value
        parse_when(value, "from")
    for value in ("2026-11-29 10:00", "2026-11-29T24:00", "2026-02-30", "29.11.2026", ""):
        assert not when.fullmatch(value), value
