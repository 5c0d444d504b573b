"""Reading the decision log over HTTP: one decision, lists with filters and pages, replays
(on a SQLite file; tests/helpers/sqlite_api.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.core.settings import Settings
from tests.helpers import sqlite_api
from tests.helpers.sqlite_api import POLICY, Api, _three_decisions, make_api, problem, sql

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api


def test_get_decision(api: Api) -> None:
    made = _three_decisions(api)
    r = api.client.get(f"/v1/decisions/{made[1]['decision_id']}", headers=api.h("reviewer"))
    assert r.status_code == 200, r.text
    row = r.json()
    assert row["decision"]["outcome"] == "refer"
    assert row["decision"]["decision_id"] == made[1]["decision_id"]
    assert row["request"]["order"]["amount"] == "10000.00"
    assert row["request"]["customer"]["exposure"] == "45000.00"
    assert row["kind"] == "new" and row["caller"].startswith("order_entry:")
    problem(
        api.client.get("/v1/decisions/nope", headers=api.h("reviewer")), 404, "unknown_decision"
    )


@pytest.mark.dates
def test_list_decisions_filters_and_pages(api: Api) -> None:
    made = _three_decisions(api)
    h = api.h("compliance")
    page = api.client.get("/v1/decisions", params={"limit": 2}, headers=h).json()
    assert [r["decision_id"] for r in page["items"]] == [
        made[2]["decision_id"],
        made[1]["decision_id"],
    ]
    assert page["next_cursor"] is not None
    page2 = api.client.get(
        "/v1/decisions", params={"limit": 2, "cursor": page["next_cursor"]}, headers=h
    ).json()
    assert [r["decision_id"] for r in page2["items"]] == [made[0]["decision_id"]]
    assert page2["next_cursor"] is None

    def ids(**params: Any) -> list[str]:
        r = api.client.get("/v1/decisions", params=params, headers=h)
        assert r.status_code == 200, r.text
        return [x["decision_id"] for x in r.json()["items"]]

    assert ids(outcome="refer") == [made[1]["decision_id"]]
    assert ids(customer_id="CUST-1") == [made[2]["decision_id"], made[0]["decision_id"]]
    assert ids(rule_id="REF_OVER_LIMIT") == [made[1]["decision_id"]]
    assert len(ids(policy_version="2026.11.1")) == 3
    assert ids(policy_version="0.0.0") == []
    assert len(ids(**{"from": "2000-01-01"})) == 3
    assert ids(**{"to": "2000-01-01"}) == []
    assert len(ids(**{"from": "2000-01-01T00:00:00+00:00", "to": "2999-01-01"})) == 3


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"outcome": "maybe"}, "query.outcome"),
        ({"from": "yesterday"}, "query.from"),
        ({"cursor": "abc"}, "query.cursor"),
        ({"cursor": str(2**63)}, "query.cursor"),  # once a 500 (integer overflow in SQL)
    ],
)
def test_list_decisions_bad_query_is_422(api: Api, params: dict, path: str) -> None:
    body = problem(
        api.client.get("/v1/decisions", params=params, headers=api.h()), 422, "invalid_request"
    )
    assert [e["path"] for e in body["errors"]] == [path]


def test_replay_of_a_stored_decision_is_identical(api: Api) -> None:
    made = _three_decisions(api)
    for d in made:
        r = api.client.get(f"/v1/decisions/{d['decision_id']}/replay", headers=api.h("compliance"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["identical"] is True, body
        assert body["differences"] == []
        assert body["stored_outcome"] == body["replayed_outcome"] == d["outcome"]


def test_replay_reports_differences(api: Api) -> None:
    made = _three_decisions(api)
    did = made[0]["decision_id"]
    (raw,) = sql(api.db, "SELECT decision FROM decision_log WHERE decision_id = ?", did)[0]
    stored = json.loads(raw)
    stored["outcome"] = "refer"
    stored["exposure_after"] = "1.00"
    sql(
        api.db,
        "UPDATE decision_log SET decision = ? WHERE decision_id = ?",
        json.dumps(stored),
        did,
    )
    body = api.client.get(f"/v1/decisions/{did}/replay", headers=api.h("compliance")).json()
    assert body["identical"] is False
    diffs = {d["path"]: (d["stored"], d["replayed"]) for d in body["differences"]}
    assert diffs == {"outcome": ("refer", "approve"), "exposure_after": ("1.00", "32500.00")}


def test_replay_uses_the_stored_policy_source(tmp_path: Path) -> None:
    """A decision made under another policy version replays under that version's text."""
    api = make_api(tmp_path)
    try:
        made = _three_decisions(api)
    finally:
        api.store.dispose()
    changed = tmp_path / "policy-v2.yaml"
    changed.write_text(POLICY.read_text().replace('version: "2026.11.1"', 'version: "2026.12.1"'))
    app2 = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'creditgate.db'}", policy_path=str(changed))
    )
    client = TestClient(app2)
    key = app2.state.store.keys.create("compliance")
    try:
        r = client.get(f"/v1/decisions/{made[1]['decision_id']}/replay", headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        assert r.json()["identical"] is True
        assert r.json()["policy"]["version"] == "2026.11.1"
        d = client.post(
            "/v1/decisions",
            headers={"X-API-Key": app2.state.store.keys.create("order_entry")},
            json={
                "order_id": "SO-9",
                "customer_id": "CUST-1",
                "amount": "1.00",
                "currency": "EUR",
                "payment_term_days": 30,
            },
        ).json()
        assert d["policy"]["version"] == "2026.12.1"
    finally:
        app2.state.store.dispose()
