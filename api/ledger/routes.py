"""The ledger: record a customer's ledger events (order cancelled, invoice issued, payment
received, credit note)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.core import examples as ex
from api.core.auth import ADMIN, Caller
from api.core.bodies import decimals_check, json_body, json_body_doc, store_refusal, to_json
from api.core.problems import Problem
from api.core.routing import caller, problems
from api.core.service import Service, service
from api.customers.routes import CUSTOMER_ID
from api.ledger.exceptions import EventConflict
from api.ledger.models import POSTED_BY, EventBody, EventResult, LedgerEventDoc

router = APIRouter(tags=["customers"])
Svc = Annotated[Service, Depends(service)]


@router.post(
    "/v1/customers/{customer_id}/events",
    operation_id="recordLedgerEvent",
    summary="Record a ledger event (order cancelled, invoice, payment, credit note)",
    description="Applied to the customer's position under the customer lock and recorded in "
    "the ledger's hash chain. Idempotent by `event_id`: the same event again answers the "
    "recorded result (`replayed: true`) and changes nothing. Separation of duties: "
    "`order_cancelled` and `invoice_issued` are posted by the `order_entry` role, "
    "`payment_received` and `credit_note` (which reduce receivables and free credit) by "
    "`finance`; `admin` may post any. Another role gets 403 `forbidden` at `type`, "
    "before anything is read or written.",
    response_model=EventResult,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {
            "description": "The event, its effect and the customer's position after it",
            **ex.content(payment=ex.EVENT_RESULT),
        },
        **problems("POST", "/v1/customers/{customer_id}/events"),
    },
    openapi_extra=json_body_doc(
        EventBody,
        ex.named(**ex.EVENTS),
        name="LedgerEvent",
        schema=LedgerEventDoc,
    ),
)
async def post_event(
    request: Request,
    customer_id: Annotated[str, CUSTOMER_ID],
    svc: Svc,
    who: Annotated[Caller, caller("POST", "/v1/customers/{customer_id}/events")],
) -> EventResult:
    body = await json_body(request, EventBody, svc.max_bytes)
    poster = POSTED_BY[body.type]
    if who.role not in (poster, ADMIN):
        raise Problem(
            "forbidden",
            f"role {who.role!r} may not post {body.type} events; they are posted by the "
            f"{poster!r} role (order documents by order_entry, what reduces receivables by "
            "finance)",
            errors=[{"path": "type", "code": "forbidden", "message": f"needs role {poster!r}"}],
        )
    if body.amount is not None:
        if body.amount <= 0:
            raise Problem(
                "invalid_request",
                "an event amount must be positive (the type gives the direction)",
                errors=[{"path": "amount", "code": "below_min", "message": "must be > 0"}],
            )
        decimals_check(svc.policy, amount=body.amount)
    event = body.model_dump(exclude_none=True)
    try:
        result = await run_in_threadpool(svc.store.ledger.apply_event, customer_id, event, who.name)
    except EventConflict as exc:
        message = str(exc)
        path = message.split(":", 1)[0] if ":" in message else ""
        raise Problem(
            "conflict",
            message,
            errors=[{"path": path, "code": "ledger_conflict", "message": message}],
        ) from None
    except ValueError as exc:
        raise store_refusal(exc) from None
    return EventResult.model_validate(to_json(result))
