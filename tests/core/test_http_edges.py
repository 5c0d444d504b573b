"""HTTP edge cases: bounded metric labels, control characters in paths and queries, aborted
uploads, duplicate query parameters, HEAD probes. On SQLite and, where the database
matters, PostgreSQL (tests/helpers/sqlite_api.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.core.settings import Settings
from tests.conftest import fresh_pg_database
from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import POLICY, Api, make_api, problem

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_pg_database("cg_edges") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_api(request: Any, tmp_path: Path) -> Iterator[Api]:
    """An ``Api`` on SQLite, then on PostgreSQL (one database for the module's tests)."""
    if request.param == "sqlite":
        a = make_api(tmp_path)
    else:
        url = request.getfixturevalue("pg_url")
        a = Api(create_app(Settings(database_url=url, policy_path=str(POLICY))), tmp_path)
    yield a
    a.store.dispose()


def metrics_text(api: Api) -> str:
    r = api.client.get("/metrics")
    assert r.status_code == 200
    return r.text


def test_invented_methods_and_paths_add_no_metric_series(api: Api) -> None:
    before = len(metrics_text(api))
    for i in range(50):
        api.client.request(f"M{i:04d}XYZ", "/healthz")
        api.client.get(f"/v1/customers/raw-{i:04d}-id")  # 401, no key
        api.client.get(f"/no-such-{i:04d}")
    text = metrics_text(api)
    assert "XYZ" not in text and "raw-00" not in text and "no-such" not in text
    assert 'method="other",route="/healthz",status="405"' in text
    assert 'route="/v1/customers/{customer_id}",status="401"' in text
    assert 'method="GET",route="unmatched",status="404"' in text
    # 150 requests of new methods and paths: a few new series, not 150 of them
    assert len(text) - before < 20_000, len(text) - before


@pytest.mark.parametrize(
    "url",
    [
        "/v1/customers/a%00b",
        "/v1/decisions/%00",
        "/v1/decisions/%00/replay",
        "/v1/decisions?customer_id=%00",
        "/v1/decisions?rule_id=a%00",
        "/v1/decisions?policy_version=%00",
        "/v1/decisions/export?customer_id=%00",
        "/v1/decisions?customer_id=a%00b&limit=5",
    ],
)
def test_nul_in_path_or_query_is_400(any_api: Api, url: str) -> None:
    any_api.customer()
    r = any_api.client.get(url, headers=any_api.h("admin"))
    body = problem(r, 400, "bad_request")
    assert body["detail"] == "NUL characters (%00) are not allowed in the path or query"
    # and without a key too: refused before anything else
    problem(any_api.client.get(url), 400, "bad_request")
    # a PUT of such a customer id is refused the same way, nothing stored
    if url.startswith("/v1/customers/"):
        r = any_api.client.put(url, headers=any_api.h("admin"), json={"currency": "EUR"})
        problem(r, 400, "bad_request")
    # the service still answers
    assert any_api.client.get("/v1/customers/CUST-1", headers=any_api.h()).status_code == 200


@pytest.mark.parametrize(
    "url, status",
    [
        ("/v1/customers/a%01b", 404),
        ("/v1/customers/a%1Fb", 404),
        ("/v1/decisions/%7F", 404),
        ("/v1/decisions?customer_id=%01&policy_version=%0A", 200),
        ("/v1/decisions?rule_id=%1F", 422),  # a rule id is one token: no control character
        ("/v1/decisions/export?customer_id=%1B", 200),
    ],
)
def test_other_control_characters_are_no_500(any_api: Api, url: str, status: int) -> None:
    r = any_api.client.get(url, headers=any_api.h("admin"))
    assert r.status_code == status, r.text


def _asgi(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list):
    """Runs one request through ``app`` as ASGI; ``chunks`` are the receive messages (bytes
    for a body chunk with more to come, None for a disconnect). Returns the sent messages."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "app": app,
    }
    queue = list(chunks)
    sent: list[dict] = []

    async def receive() -> dict:
        if queue:
            part = queue.pop(0)
            if part is not None:
                return {"type": "http.request", "body": part, "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_an_aborted_upload_is_499_not_a_500(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    api.customer()
    headers = [
        (b"authorization", f"Bearer {api.keys['order_entry']}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", b"1000"),
    ]
    with caplog.at_level(logging.INFO, logger="creditgate"):
        sent = _asgi(api.app, "POST", "/v1/decisions", headers, [b'{"order_', None])
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 499
    assert not [r for r in caplog.records if r.exc_info or r.getMessage() == "unhandled error"]
    warned = [r for r in caplog.records if "closed the connection" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert warned[0].received_bytes == 8
    text = metrics_text(api)
    assert 'method="POST",route="/v1/decisions",status="499"' in text
    assert 'status="500"' not in text
    listed = api.client.get("/v1/decisions", headers=api.h("reviewer")).json()
    assert listed["items"] == [], listed  # nothing was decided or recorded


@pytest.mark.parametrize(
    "url, names",
    [
        ("/v1/decisions/export?format=csv&format=jsonl", ["format"]),
        ("/v1/decisions/export?customer_id=A&customer_id=B", ["customer_id"]),
        ("/v1/decisions?limit=1&limit=500", ["limit"]),
        ("/v1/decisions?outcome=approve&outcome=decline&cursor=1&cursor=2", ["outcome", "cursor"]),
        ("/v1/decisions?from=2026-01-01&from=2026-02-01", ["from"]),
    ],
)
def test_a_query_parameter_given_twice_is_422(api: Api, url: str, names: list[str]) -> None:
    body = problem(api.client.get(url, headers=api.h("compliance")), 422, "invalid_request")
    assert [e["path"] for e in body["errors"]] == [f"query.{n}" for n in names], body
    assert {e["code"] for e in body["errors"]} == {"duplicate_parameter"}
    assert "give it once" in body["errors"][0]["message"]


def test_head_on_the_ops_routes(any_api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        got = any_api.client.get(path)
        r = any_api.client.head(path)
        assert r.status_code == 200, (path, r.status_code, r.text)
        assert r.content == b""
        assert r.headers["content-type"] == got.headers["content-type"]
        assert "x-request-id" in r.headers
    assert 'method="HEAD",route="/healthz"' in metrics_text(any_api)
    # the HEAD routes do not double the OpenAPI document's operations
    paths = any_api.client.get("/openapi.json").json()["paths"]
    assert set(paths["/healthz"]) == {"get"} and set(paths["/readyz"]) == {"get"}
