"""Examples of every operation of the OpenAPI document: the worked example of the README
(an order of EUR 10,000.00 from customer CUST-0004, EUR 50,000.00 limit, EUR 45,000.00
used: referred, 50 % deposit) as the service answers it. The decision's trail is cut to
five of its rules. ``tests/core/test_contract.py`` checks every example against its
schema."""

from __future__ import annotations

import copy
from typing import Any

DECISION_ID = "a087e2fa-125c-412c-ba42-1cd0e6cfdfcb"
CUSTOMER_ID = "CUST-0004"
ORDER_ID = "SO-2026-1004"
POLICY = {
    "id": "trade-credit",
    "version": "2026.11.1",
    "sha256": "48340a2f5977738af73152bfffe673c189c0e4af28c287c3de12183085c9fea1",
}


#: every example value by key: FastAPI drops the ``null`` values of the whole document
#: (also inside examples), so ``named`` marks each example with its key and
#: ``restore_examples`` puts the value back as it is
EXAMPLE_VALUES: dict[str, Any] = {}
MARK = "x-example-key"


def named(**values: Any) -> dict[str, Any]:
    """OpenAPI ``examples``: ``{name: {"value": value}}`` (a tuple ``(summary, value)`` gives
    the example a summary)."""
    out = {}
    for name, value in values.items():
        summary = None
        if isinstance(value, tuple):
            summary, value = value
        key = f"example-{len(EXAMPLE_VALUES)}"
        EXAMPLE_VALUES[key] = value
        out[name] = {"value": value, MARK: key}
        if summary:
            out[name]["summary"] = summary
    return out


def restore_examples(node: Any) -> None:
    """Put every marked example's value back into the document (in place), nulls included."""
    if isinstance(node, dict):
        key = node.pop(MARK, None)
        if key is not None:
            node["value"] = copy.deepcopy(EXAMPLE_VALUES[key])
        for value in node.values():
            restore_examples(value)
    elif isinstance(node, list):
        for value in node:
            restore_examples(value)


def content(media_type: str = "application/json", **values: Any) -> dict[str, Any]:
    """A response's ``content`` entry with named examples."""
    return {"content": {media_type: {"examples": named(**values)}}}


DECISION_REQUEST = {
    "order_id": ORDER_ID,
    "customer_id": CUSTOMER_ID,
    "amount": "10000.00",
    "currency": "EUR",
    "payment_term_days": 30,
}
DECISION_REQUEST_USD = {
    "order_id": "SO-2026-1005",
    "customer_id": CUSTOMER_ID,
    "amount": "1200.00",
    "currency": "USD",
    "payment_term_days": 30,
}
DECISION_REQUEST_FACTS = {**DECISION_REQUEST, "order_id": "SO-2026-1006", "amount": "2500.00"}
DECISION_REQUEST_FACTS["facts"] = {"customer.country_risk": "medium"}

DECISION: dict[str, Any] = {
    "decision_id": DECISION_ID,
    "outcome": "refer",
    "score": 450,
    "tier": "A",
    "currency": "EUR",
    "order_amount": "10000.00",
    "deposit_pct": "50.00",
    "deposit_amount": "5000.00",
    "requested_payment_term_days": 30,
    "approved_payment_term_days": 30,
    "credit_limit": "50000.00",
    "exposure_after": "55000.00",
    "available_credit": "-5000.00",
    "reasons": [
        {
            "code": "REF_OVER_LIMIT",
            "message": "Order takes the customer over the credit limit",
            "rule_id": "REF_OVER_LIMIT",
            "stage": "referral",
        },
        {
            "code": "DEP_OVER_LIMIT",
            "message": "The part of the order above the credit limit is paid up front",
            "rule_id": "DEP_COVER_EXCESS",
            "stage": "deposit",
        },
        {
            "code": "SC_HIGH_UTILISATION",
            "message": "Credit limit used after this order: 1 and above (0 of 50 points)",
            "rule_id": "SC_UTILISATION.4",
            "stage": "scorecard",
        },
    ],
    "escalation": {
        "level": "credit_analyst",
        "chain": ["credit_analyst", "credit_manager", "finance_director", "general_manager"],
        "sla_hours": 4,
        "basis": "order.amount",
        "basis_amount": "10000.00",
    },
    "trail": {
        "inputs": {
            "order.amount": "10000.00",
            "order.payment_term_days": 30,
            "customer.credit_limit": "50000.00",
            "customer.exposure": "45000.00",
            "customer.overdue_amount": "0.00",
            "customer.days_past_due": 0,
            "customer.avg_days_late": "0.5",
            "customer.disputed_invoices": 0,
            "customer.years_in_business": "12",
            "customer.risk_class": "low",
            "customer.new_customer": False,
            "customer.blacklisted": False,
            "customer.in_litigation": False,
            "customer.insolvency": False,
            "customer.country_risk": "low",
        },
        "derived": {
            "exposure_after": "55000.00",
            "available_credit": "-5000.00",
            "over_limit_amount": "5000.00",
            "utilisation": "1.1",
            "overdue_share": "0",
        },
        "notes": [],
        "rules": [
            {
                "rule_id": "KO_BLACKLIST",
                "stage": "knockout",
                "description": "Customer is on the internal blacklist",
                "matched": False,
                "reads": {"customer.blacklisted": False},
                "effect": None,
            },
            {
                "rule_id": "SC_RISK_CLASS.1",
                "stage": "scorecard",
                "description": "Rating from the last credit review: in low",
                "matched": True,
                "reads": {"customer.risk_class": "low"},
                "effect": "points +120",
            },
            {
                "rule_id": "SC_UTILISATION.4",
                "stage": "scorecard",
                "description": "Credit limit used after this order: 1 and above",
                "matched": True,
                "reads": {"utilisation": "1.1"},
                "effect": "points +0",
            },
            {
                "rule_id": "DEP_COVER_EXCESS",
                "stage": "deposit",
                "description": "The part of the order above the credit limit is paid up front",
                "matched": True,
                "reads": {"over_limit_amount": "5000.00"},
                "effect": "deposit at least 5000.00",
            },
            {
                "rule_id": "REF_OVER_LIMIT",
                "stage": "referral",
                "description": "Order takes the customer over the credit limit",
                "matched": True,
                "reads": {"exposure_after": "55000.00", "customer.credit_limit": "50000.00"},
                "effect": "refer",
            },
        ],
    },
    "policy": POLICY,
    "engine_version": "creditgate 0.1.0; durable_rules 2.0.28",
    "evaluated_at": "2026-11-29T21:18:15.314667Z",
    "order_id": ORDER_ID,
    "customer_id": CUSTOMER_ID,
}
DECISION_ANSWER = {"kind": "new", **DECISION}
DECISION_ANSWER_USD: dict[str, Any] = {
    "kind": "new",
    "fx": {
        "original_amount": "1200.00",
        "original_currency": "USD",
        "currency": "EUR",
        "rate": "0.92",
        "rate_as_of": "2026-11-27",
        "order_date": "2026-11-29",
        "rounding": "half-even to 0.01",
        "converted_amount": "1104.00",
    },
    **copy.deepcopy(DECISION),
    "decision_id": "5f0c2a57-1c44-4f0e-9a43-2f4cc61c6a1e",
    "order_id": "SO-2026-1005",
    "order_amount": "1104.00",
}

RECORD: dict[str, Any] = {
    "seq": 1,
    "decision_id": DECISION_ID,
    "order_id": ORDER_ID,
    "customer_id": CUSTOMER_ID,
    "outcome": "refer",
    "kind": "new",
    "policy_id": POLICY["id"],
    "policy_version": POLICY["version"],
    "policy_sha256": POLICY["sha256"],
    "request": {
        "customer": {
            "avg_days_late": "0.5",
            "credit_limit": "50000.00",
            "days_past_due": 0,
            "exposure": "45000.00",
            "id": CUSTOMER_ID,
            "risk_class": "low",
            "years_in_business": "12",
        },
        "order": {
            "amount": "10000.00",
            "currency": "EUR",
            "id": ORDER_ID,
            "payment_term_days": 30,
        },
    },
    "decision": DECISION,
    "rules_matched": " SC_RISK_CLASS.1 SC_YEARS_TRADING.4 SC_PAYMENT_BEHAVIOUR.1 "
    "SC_CURRENT_OVERDUE.1 SC_UTILISATION.4 SC_TRACK_RECORD.1 SC_DISPUTES.1 DEP_COVER_EXCESS "
    "REF_OVER_LIMIT ",
    "content_hash": "41d145845071873693881e5f464160d17f080b28caab1481b20ca6a4a8941204",
    "caller": "order_entry:3f2a9c81d0b4",
    "created_at": "2026-11-29T21:18:15.302214+00:00",
    "record_hash": "ed8da999e124e5cd230e9450d82d54b8394104a88e729bbcac8264dafb0a3aed",
    "prev_hash": "0" * 64,
    "business_unit": "default",
}
MASKED_RECORD = copy.deepcopy(RECORD)
MASKED_RECORD["request"]["order"]["amount"] = "***"
MASKED_RECORD["decision"].update(
    order_amount="***", exposure_after="***", available_credit="***", deposit_amount="***"
)
MASKED_RECORD["decision"]["escalation"]["basis_amount"] = "***"
MASKED_RECORD["decision"]["trail"]["inputs"]["order.amount"] = "***"

PAGE = {"items": [RECORD], "next_cursor": None}
REPLAY = {
    "decision_id": DECISION_ID,
    "identical": True,
    "policy": POLICY,
    "stored_outcome": "refer",
    "replayed_outcome": "refer",
    "differences": [],
}
EXPORT_JSONL = '{"seq":1,"decision_id":"' + DECISION_ID + '",...}\n{"complete":true,"records":1}\n'
EXPORT_CSV = (
    "seq,decision_id,created_at,order_id,customer_id,outcome,kind,score,tier,order_amount,"
    "currency,deposit_pct,deposit_amount,approved_payment_term_days,reason_codes,"
    "escalation_level,policy_id,policy_version,policy_sha256,caller,content_hash,record_hash,"
    "prev_hash,fx,request,decision\n"
    f"1,{DECISION_ID},2026-11-29T21:18:15.302214+00:00,{ORDER_ID},{CUSTOMER_ID},refer,new,"
    "450,A,10000.00,EUR,50.00,5000.00,30,REF_OVER_LIMIT DEP_OVER_LIMIT SC_HIGH_UTILISATION,"
    "credit_analyst,"
    "...\n#complete,1\n"
)

CUSTOMER_BODY = {
    "currency": "EUR",
    "credit_limit": "50000.00",
    "open_receivables": "45000.00",
    "facts": {"risk_class": "low", "years_in_business": 12, "avg_days_late": "0.5"},
}
CUSTOMER = {
    "customer_id": CUSTOMER_ID,
    "currency": "EUR",
    "credit_limit": "50000.00",
    "open_receivables": "45000.00",
    "open_orders": "0.00",
    "exposure": "45000.00",
    "available_credit": "5000.00",
    "days_past_due": 0,
    "credit_balance": "0.00",
    "facts": {"avg_days_late": "0.5", "risk_class": "low", "years_in_business": "12"},
    "updated_at": "2026-11-29T21:17:58.118903+00:00",
}
IMPORT_CSV = (
    "customer_id,currency,credit_limit,open_receivables,days_past_due,"
    "customer.risk_class,customer.years_in_business,customer.avg_days_late\n"
    f"{CUSTOMER_ID},EUR,50000.00,45000.00,0,low,12,0.5\n"
)

EVENTS = {
    "payment_received": {
        "event_id": "PAY-2026-0001",
        "type": "payment_received",
        "amount": "5000.00",
        "currency": "EUR",
    },
    "invoice_issued": {
        "event_id": "INV-2026-0001",
        "type": "invoice_issued",
        "order_id": ORDER_ID,
        "amount": "10000.00",
        "currency": "EUR",
    },
    "order_cancelled": {
        "event_id": "CXL-2026-0001",
        "type": "order_cancelled",
        "order_id": ORDER_ID,
    },
    "credit_note": {
        "event_id": "CN-2026-0001",
        "type": "credit_note",
        "order_id": ORDER_ID,
        "amount": "250.00",
        "currency": "EUR",
    },
}
EVENT_RESULT = {
    "event_id": "PAY-2026-0001",
    "type": "payment_received",
    "customer_id": CUSTOMER_ID,
    "order_id": None,
    "amount": "5000.00",
    "currency": "EUR",
    "effect": {"open_orders": "0.00", "open_receivables": "-5000.00", "credit_balance": "0.00"},
    "caller": "order_entry:3f2a9c81d0b4",
    "recorded_at": "2026-11-29T21:20:03.552019+00:00",
    "replayed": False,
    "customer": {
        **CUSTOMER,
        "open_receivables": "40000.00",
        "exposure": "40000.00",
        "available_credit": "10000.00",
        "updated_at": "2026-11-29T21:20:03.552019+00:00",
    },
}

LEDGER_EVENT_RECORD = {
    "seq": 2,
    "event_id": "INV-2026-0001",
    "customer_id": CUSTOMER_ID,
    "type": "invoice_issued",
    "order_id": ORDER_ID,
    "amount": "10000.00",
    "currency": "EUR",
    "content_hash": "7c1e4b2a9d8f0e3c5b6a7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2",
    # the referred order, approved by a person and invoiced: no reservation covered it
    "effect": {
        "open_orders": "0.00",
        "open_receivables": "10000.00",
        "credit_balance": "0.00",
        "unreserved": "10000.00",
    },
    "caller": "order_entry:3f2a9c81d0b4",
    "created_at": "2026-11-29T21:19:40.118342+00:00",
    "prev_hash": "2b8e0f6d4c1a3e5f7a9b0c2d4e6f8a0b1c3d5e7f9a1b2c4d6e8f0a2b4c6d8e0f",
    "record_hash": "9b1f0b5c3fd1f54e1f1a0d0b7d3f4cbb8f2e0c8d0e9c1b7a5f3e2d1c0b9a8f7e",
    "business_unit": "default",
}
LEDGER_EVENTS_PAGE = {"items": [LEDGER_EVENT_RECORD], "next_cursor": None}
LEDGER_EXPORT_JSONL = (
    '{"seq":2,"event_id":"INV-2026-0001",...}\n{"complete":true,"records":1}\n'
)
LEDGER_EXPORT_CSV = (
    "seq,event_id,created_at,customer_id,order_id,type,amount,currency,effect_open_orders,"
    "effect_open_receivables,effect_credit_balance,effect_unreserved,caller,prev_hash,"
    "record_hash,record\n"
    f"2,INV-2026-0001,2026-11-29T21:19:40.118342+00:00,{CUSTOMER_ID},{ORDER_ID},"
    "invoice_issued,10000.00,EUR,0.00,10000.00,0.00,10000.00,order_entry:3f2a9c81d0b4,"
    "...\n#complete,1\n"
)

FX_BODY = {"base": "EUR", "rates": [{"currency": "USD", "rate": "0.92", "as_of": "2026-11-27"}]}
FX_RESULT = {"base": "EUR", "stored": 1}

AUDIT = {
    "ok": True,
    "checked": 1,
    "first_broken_seq": None,
    "reason": None,
    "head_seq": 1,
    "head_hash": RECORD["record_hash"],
    "moved_clock": 0,
    "ledger": {
        "ok": True,
        "checked": 1,
        "first_broken_seq": None,
        "reason": None,
        "head_seq": 1,
        "head_hash": "9b1f0b5c3fd1f54e1f1a0d0b7d3f4cbb8f2e0c8d0e9c1b7a5f3e2d1c0b9a8f7e",
        "moved_clock": 0,
    },
    "customer_history": {
        "ok": True,
        "checked": 1,
        "first_broken_seq": None,
        "reason": None,
        "head_seq": 1,
        "head_hash": "4c2a7e1f0b9d8c3e5a6f7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7a8b9c0",
        "moved_clock": 0,
    },
    "consistency": {
        "ok": True,
        "customers": 1,
        "policy_versions": 1,
        "problems": [],
        "problems_total": 0,
    },
}
CUSTOMER_HISTORY = {
    "items": [
        {
            "seq": 2,
            "customer_id": CUSTOMER_ID,
            "version": 2,
            "source": "patch",
            "at": "2026-11-29T12:00:00.000000+00:00",
            "who": {"key_id": "3f1c9a0b5d7e", "role": "admin", "name": "credit desk"},
            "reason": "credit review 2026-Q4",
            "changes": {
                "credit_limit": {"old": "50000.00", "new": "60000.00"},
                "facts.blacklisted": {"old": True, "new": False},
            },
            "record_hash": "5d0c7e3b2a1f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d",
        }
    ],
    "next_cursor": 2,
}
POLICY_IN_FORCE = {
    **POLICY,
    "currency": "EUR",
    "rules": 39,
    "description": "Trade-credit policy for B2B sales orders on open account.",
}
HEALTH = {"status": "ok"}
READY = {"status": "ready", "policy": POLICY}
METRICS = (
    "# HELP creditgate_decisions_total Decisions answered\n"
    "# TYPE creditgate_decisions_total counter\n"
    'creditgate_decisions_total{kind="new",outcome="refer"} 1.0\n'
)

#: the worked example's order, amended to EUR 4,000.00 (approved), sent again, then partly
#: invoiced (``GET /v1/orders/{order_id}``)
_AMENDED_ID = "5b0c6f6e-8d0a-4a57-9b6e-2f1d7c3e9a10"
_REPEAT_ID = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
_ERP = {"caller": "order_entry:3f2a9c81d0b4", "role": "order_entry", "key_id": "3f2a9c81d0b4"}
ORDER_VIEW = {
    "order_id": ORDER_ID,
    "customer_id": CUSTOMER_ID,
    "status": "partly_invoiced",
    "currency": "EUR",
    "decision_id": _AMENDED_ID,
    "outcome": "approve",
    "approved_amount": "4000.00",
    "open_reservation": "1500.00",
    "invoiced_amount": "2500.00",
    "unreserved_amount": "0.00",
    "timeline": [
        {
            "entry": "decision",
            "created_at": "2026-11-29T21:18:15.314667+00:00",
            "seq": 1,
            "record_id": DECISION_ID,
            "decision_id": DECISION_ID,
            "kind": "new",
            "replaces": None,
            "outcome": "refer",
            "policy": POLICY,
            **_ERP,
        },
        {
            "entry": "decision",
            "created_at": "2026-11-29T21:19:02.120511+00:00",
            "seq": 2,
            "record_id": _AMENDED_ID,
            "decision_id": _AMENDED_ID,
            "kind": "amended",
            "replaces": DECISION_ID,
            "outcome": "approve",
            "policy": POLICY,
            **_ERP,
        },
        {
            "entry": "decision",
            "created_at": "2026-11-29T21:19:30.004113+00:00",
            "seq": 3,
            "record_id": _REPEAT_ID,
            "decision_id": _AMENDED_ID,
            "kind": "repeat",
            "replaces": None,
            "outcome": "approve",
            "policy": POLICY,
            **_ERP,
        },
        {
            "entry": "ledger_event",
            "created_at": "2026-11-29T21:20:03.552019+00:00",
            "seq": 1,
            "event_id": "INV-2026-0001",
            "type": "invoice_issued",
            "amount": "2500.00",
            "currency": "EUR",
            "effect": {
                "open_orders": "-2500.00",
                "open_receivables": "2500.00",
                "credit_balance": "0.00",
            },
            **_ERP,
        },
    ],
}
