"""The ledger: record a customer's ledger events (order cancelled, invoice issued, payment
received, credit note)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.core.auth import Caller
from api.core.bodies import decimals_check, json_body, json_body_doc, store_refusal, to_json
from api.core.problems import Problem
from api.core.routing import caller, problems
from api.core.service import Service, service
from api.ledger.exceptions import EventConflict
from api.ledger.models import EventBody

router = APIRouter(tags=["customers"])
Svc = Annotated[Service, Depends(service)]


@router.post(
    "/v1/customers/{customer_id}/events",
    summary="Record a ledger event (order cancelled, invoice, payment, credit note)",
    responses=problems("POST", "/v1/customers/{customer_id}/events"),
    openapi_extra=json_body_doc(EventBody),
)
async def post_event(
    request: Request,
    customer_id: Annotated[str, Path(max_length=200)],
    svc: Svc,
    who: Annotated[Caller, caller("POST", "/v1/customers/{customer_id}/events")],
) -> JSONResponse:
    body = await json_body(request, EventBody, svc.max_bytes)
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
    return JSONResponse(to_json(result))
