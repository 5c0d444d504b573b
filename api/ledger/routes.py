"""The ledger: record a customer's ledger events (order cancelled, invoice issued, payment
received, credit note); list and export the recorded events (the ledger's hash chain)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.core import examples as ex
from api.core.auth import ADMIN, Caller
from api.core.bodies import decimals_check, json_body, json_body_doc, store_refusal, to_json
from api.core.database import UnreadableRecord
from api.core.export import export_responses, opened
from api.core.params import KNOWN_QUERY, Cursor, PageLimit
from api.core.problems import Problem, unreadable_problem
from api.core.routing import caller, problems
from api.core.service import Service, service
from api.customers.routes import CUSTOMER_ID
from api.ledger.exceptions import EventConflict
from api.ledger.export import stream
from api.ledger.models import (
    POSTED_BY,
    EventBody,
    EventResult,
    LedgerEventDoc,
    LedgerEventPage,
)
from api.ledger.params import EventFilters

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


# -- reading the ledger ----------------------------------------------------------------------
# One list with filters, no /v1/ledger-events/{event_id}: an event id is the caller's (unique
# in the business unit, across customers) and may contain "/" or be "export", so it is a
# query value (?event_id=), never a path segment.


@router.get(
    "/v1/ledger-events",
    operation_id="listLedgerEvents",
    tags=["ledger"],
    summary="List ledger events (newest first)",
    description="The recorded ledger events of the service's business unit (every customer), "
    "newest first, as hash-chained (chain `ledger`); every filter given must hold, each "
    "exact. `next_cursor` pages on: events recorded meanwhile never shift a page. One event "
    "by its id: `?event_id=`.",
    response_model=LedgerEventPage,
    responses={
        200: {"description": "One page", **ex.content(page=ex.LEDGER_EVENTS_PAGE)},
        **problems("GET", "/v1/ledger-events"),
    },
)
def list_ledger_events(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/ledger-events")],
    _known: Annotated[None, KNOWN_QUERY],
    filters: Annotated[EventFilters, Depends()],
    cursor: Cursor = None,
    limit: PageLimit = 50,
) -> JSONResponse:
    try:
        rows, next_cursor = svc.store.ledger.search(
            cursor=cursor, limit=limit, **filters.as_kwargs()
        )
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    return JSONResponse(to_json({"items": rows, "next_cursor": next_cursor}))


@router.get(
    "/v1/ledger-events/export",
    operation_id="exportLedgerEvents",
    tags=["ledger"],
    summary="Export the ledger events (CSV or JSON lines)",
    description="Streamed in `seq` order (oldest first), with the list's filters. The last "
    'line says whether the export is complete: `{"complete": true, "records": N}` (jsonl), '
    'the row `#complete,N` (csv); a failure mid-stream ends it with `{"complete": false, '
    '...}` (`#incomplete,N,error`) and aborts the connection.',
    response_class=Response,
    responses={
        200: export_responses(
            "jsonl: a LedgerEventRecord as JSON; csv: its columns, the amount and the "
            "effect's moves flat, the whole record as JSON text",
            ex.LEDGER_EXPORT_JSONL,
            ex.LEDGER_EXPORT_CSV,
        ),
        **problems("GET", "/v1/ledger-events/export"),
    },
)
def export_ledger_events(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/ledger-events/export")],
    _known: Annotated[None, KNOWN_QUERY],
    filters: Annotated[EventFilters, Depends()],
    format: Literal["csv", "jsonl"] = "jsonl",  # noqa: A002 - the query name
) -> Response:
    # The first batch is read before the answer starts: an unreadable event in it is a
    # problem response, not a 200 with a short body.
    records = opened(svc.store.ledger.iterate(**filters.as_kwargs()))
    return stream(records, format, svc.clock.now())
