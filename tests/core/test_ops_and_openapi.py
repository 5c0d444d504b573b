"""The open endpoints (health, readiness, metrics), the OpenAPI document, the offline docs,
problem bodies and every problem code documented (on a SQLite file;
tests/helpers/sqlite_api.py)."""

from __future__ import annotations

import json

from api.app import ROUTES
from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import PROBLEM, ROOT, Api

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api


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


def test_openapi_lists_the_routes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for method, path, _ in ROUTES:
        assert method.lower() in spec["paths"][path]
    body = spec["paths"]["/v1/decisions"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    if "$ref" in schema:  # a named component (DecisionRequest)
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert "amount" in schema["properties"]


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
