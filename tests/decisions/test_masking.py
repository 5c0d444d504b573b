"""Masking sensitive inputs in reads and exports, and in the values derived from them
(SQLite and PostgreSQL; tests/helpers/ledger.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import sqlalchemy as sa

from engine.evaluate import evaluate, load
from tests.helpers import ledger
from tests.helpers.ledger import POLICY, PRIME, Api, problem

# pytest fixtures from tests/helpers/ledger.py (SQLite and PostgreSQL, clock at NOW)
db_url = ledger.db_url
pg_url = ledger.pg_url


def _sensitive_policy(
    tmp_path: Path, old: str = "customer.years_in_business: {type: decimal, min: 0,"
) -> Path:
    text = POLICY.read_text()
    assert old in text
    path = tmp_path / "policy-sensitive.yaml"
    path.write_text(text.replace(old, old + " sensitive: true,"))
    return path


def test_http_export_streams_and_masks_sensitive_inputs(db_url, tmp_path):
    api = Api(db_url, _sensitive_policy(tmp_path))
    try:
        api.customer()
        for i in range(3):
            assert api.decide(order_id=f"SO-{i}", amount="100.00").status_code == 200
        r = api.client.get("/v1/decisions/export?format=jsonl", headers=api.h("compliance"))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(x) for x in r.text.splitlines()]
        assert lines.pop() == {"complete": True, "records": 3}
        assert [x["order_id"] for x in lines] == ["SO-0", "SO-1", "SO-2"]
        for x in lines:
            assert x["request"]["customer"]["years_in_business"] == "***"
            assert x["request"]["customer"]["risk_class"] == "low"
            trail = x["decision"]["trail"]
            assert trail["inputs"]["customer.years_in_business"] == "***"
            assert "12" not in json.dumps(
                [rule.get("reads", {}).get("customer.years_in_business") for rule in trail["rules"]]
            )
        assert 'years_in_business": 12' not in r.text and '"12"' not in r.text
        r = api.client.get("/v1/decisions/export?format=csv", headers=api.h("compliance"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [rows[-1]["seq"], rows.pop()["decision_id"]] == ["#complete", "3"]
        assert [x["order_id"] for x in rows] == ["SO-0", "SO-1", "SO-2"]
        assert json.loads(rows[0]["request"])["customer"]["years_in_business"] == "***"
        assert rows[0]["fx"] == ""
        # every read of the log masks the same way: one record, the list
        one = api.client.get(f"/v1/decisions/{lines[0]['decision_id']}", headers=api.h("reviewer"))
        assert one.status_code == 200, one.text
        assert one.json()["request"]["customer"]["years_in_business"] == "***"
        assert one.json()["decision"]["trail"]["inputs"]["customer.years_in_business"] == "***"
        assert one.json()["request"]["customer"]["risk_class"] == "low"
        listed = api.client.get("/v1/decisions", headers=api.h("reviewer")).json()["items"]
        assert [x["order_id"] for x in listed] == ["SO-2", "SO-1", "SO-0"]
        assert all(x["request"]["customer"]["years_in_business"] == "***" for x in listed)
        assert '"12"' not in json.dumps(listed) and '"12"' not in one.text
        # ...while the log itself keeps the real values (replay and the hash chain use them)
        stored = api.store.decisions.get(lines[0]["decision_id"])
        assert stored["request"]["customer"]["years_in_business"] == "12"
        assert api.client.get("/v1/audit/verify", headers=api.h("compliance")).json()["ok"]
        problem(api.client.get("/v1/decisions/export", headers=api.h("reviewer")), 403)
        problem(api.client.get("/v1/decisions/export?format=xml", headers=api.h("compliance")), 422)
        r = api.client.get(
            "/v1/decisions/export?customer_id=nobody&format=csv", headers=api.h("compliance")
        )
        assert r.text.splitlines() == [
            ",".join(__import__("api.decisions.export").decisions.export.EXPORT_COLUMNS),
            "#complete,0",
        ]
    finally:
        api.store.dispose()


def test_http_reads_mask_fields_and_derived_values_computed_from_a_sensitive_input(
    db_url, tmp_path
):
    from api.decisions.tables import DecisionLog

    policy = _sensitive_policy(tmp_path, "customer.credit_limit:   {type: money, min: 0,")
    api = Api(db_url, policy)
    try:
        api.customer(credit_limit="54321.00")
        posted = api.decide(amount="100.00")
        assert posted.status_code == 200, posted.text
        # the order-entry caller who sent the order gets the decision unmasked
        assert posted.json()["credit_limit"] == "54321.00"
        assert posted.json()["available_credit"] == "34221.00"
        did = posted.json()["decision_id"]
        one = api.client.get(f"/v1/decisions/{did}", headers=api.h("reviewer")).json()
        listed = api.client.get("/v1/decisions", headers=api.h("reviewer")).json()["items"]
        export = api.client.get("/v1/decisions/export", headers=api.h("compliance")).text
        for text in (json.dumps(one), json.dumps(listed), export):
            assert "54321" not in text and "34221" not in text
        d = one["decision"]
        assert d["credit_limit"] == "***" and d["available_credit"] == "***"
        assert d["exposure_after"] == "20100.00"  # exposure + amount: not from the limit
        assert d["order_amount"] == "100.00" and d["outcome"] == "approve"
        derived = d["trail"]["derived"]
        assert derived["available_credit"] == "***" and derived["over_limit_amount"] == "***"
        assert derived["utilisation"] == "***"
        assert derived["exposure_after"] == "20100.00" and derived["overdue_share"] != "***"
        assert d["trail"]["inputs"]["customer.credit_limit"] == "***"
        assert one["request"]["customer"]["credit_limit"] == "***"
        assert listed[0]["decision"]["credit_limit"] == "***"
        reads = [r["reads"] for r in d["trail"]["rules"] if "utilisation" in r["reads"]]
        assert reads and all(r["utilisation"] == "***" for r in reads)
        # replay works from the stored values and shows no masked value in its differences
        r = api.client.get(f"/v1/decisions/{did}/replay", headers=api.h("compliance")).json()
        assert r["identical"] is True and r["differences"] == []
        with api.store.engine.begin() as conn:  # a tampered snapshot: the limit changed
            request = api.store.decisions.get(did)["request"]
            request["customer"]["credit_limit"] = "54322.00"
            conn.execute(
                sa.update(DecisionLog.__table__)
                .where(DecisionLog.__table__.c.decision_id == did)
                .values(request=json.dumps(request))
            )
        r = api.client.get(f"/v1/decisions/{did}/replay", headers=api.h("compliance"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["identical"] is False
        paths = {x["path"] for x in body["differences"]}
        assert {"credit_limit", "available_credit", "trail.inputs.customer.credit_limit"} <= paths
        assert all(x["stored"] == "***" and x["replayed"] == "***" for x in body["differences"])
        assert "5432" not in r.text and "3422" not in r.text
    finally:
        api.store.dispose()


def test_mask_record_hides_amount_term_escalation_and_fx_of_sensitive_order_inputs(tmp_path):
    from api.decisions.masking import mask_record, masking_for

    text = POLICY.read_text()
    for old in (
        "order.amount:            {type: money, min: 0.01,",
        "order.payment_term_days: {type: int, min: 0, max: 365,",
    ):
        assert old in text
        text = text.replace(old, old + " sensitive: true,")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    compiled = load(str(path))
    request = {
        "order": {"id": "SO-1", "amount": "98765.43", "payment_term_days": 365},
        "customer": {
            "id": "C1",
            "credit_limit": "50000.00",
            "exposure": "1000.00",
            **PRIME,
        },
    }
    decision = evaluate(compiled, request).model_dump(mode="json")
    assert decision["outcome"] == "refer" and decision["escalation"] is not None
    assert any(r["rule_id"] == "terms.over_cap" for r in decision["reasons"])
    row = {
        "request": request,
        "decision": decision,
        "fx": {"original_amount": "107353.73", "rate": "0.92", "converted_amount": "98765.43"},
    }
    out = mask_record(row, masking_for(compiled.policy))
    d = out["decision"]
    for field in (
        "order_amount",
        "exposure_after",
        "available_credit",
        "requested_payment_term_days",
        "approved_payment_term_days",
    ):
        assert d[field] == "***", field
    assert d["credit_limit"] == "50000.00"  # not sensitive, not computed from one
    assert d["escalation"]["basis_amount"] == "***" and d["escalation"]["level"]
    over_cap = [r for r in d["reasons"] if r["rule_id"] == "terms.over_cap"]
    assert over_cap[0]["message"] == "***" and over_cap[0]["code"]
    assert out["fx"] == {"original_amount": "***", "rate": "0.92", "converted_amount": "***"}
    assert "98765" not in json.dumps(out) and "365" not in json.dumps(out["decision"]["trail"])
    assert row["decision"]["order_amount"] == "98765.43"  # a copy: the record is untouched
