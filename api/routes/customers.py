"""Customers and their exposure ledger: create/replace a customer's credit position, read
it, record ledger events (order cancelled, invoice issued, payment received, credit note)
and import customers from CSV."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic_core import PydanticCustomError

from api.auth import Caller
from api.bodies import (
    CustomerBody,
    EventBody,
    check_customer_facts,
    customer_currency_check,
    decimals_check,
    json_body,
    json_body_doc,
    money_facts,
    parse_customer_id,
    read_body,
    store_refusal,
    to_json,
)
from api.csvio import parse_customer_csv
from api.problems import Problem
from api.routes import caller, problems
from api.service import Service, service

router = APIRouter(tags=["customers"])
Svc = Annotated[Service, Depends(service)]


@router.put(
    "/v1/customers/{customer_id}",
    summary="Create or replace a customer's credit position",
    responses=problems("PUT", "/v1/customers/{customer_id}"),
    openapi_extra=json_body_doc(CustomerBody),
)
async def put_customer(
    request: Request,
    customer_id: Annotated[str, Path(max_length=200)],
    svc: Svc,
    _: Annotated[Caller, caller("PUT", "/v1/customers/{customer_id}")],
) -> JSONResponse:
    policy = svc.policy
    try:
        parse_customer_id(customer_id)
    except PydanticCustomError as exc:
        raise Problem(
            "invalid_request",
            "the customer id is not valid",
            errors=[{"path": "customer_id", "code": exc.type, "message": exc.message()}],
        ) from None
    body = await json_body(request, CustomerBody, svc.max_bytes)
    customer_currency_check(policy, body.currency)
    amounts = {"credit_limit": body.credit_limit}
    if body.open_receivables is not None:
        amounts["open_receivables"] = body.open_receivables
    decimals_check(policy, **amounts)
    errors = [
        {"path": p, "code": "below_min", "message": "must not be negative"}
        for p, v in (
            ("credit_limit", body.credit_limit),
            ("open_receivables", body.open_receivables),
            ("days_past_due", body.days_past_due),
        )
        if v is not None and v < 0
    ]
    facts = None
    if body.facts is not None:
        errors += money_facts(policy, body.facts, "facts")
        facts, bad_facts = check_customer_facts(policy, body.facts)
        errors += bad_facts
    if errors:
        n = len(errors)
        raise Problem(
            "invalid_request",
            f"{n} problem{'s' if n != 1 else ''} with the customer; nothing was stored",
            errors=errors,
        )
    try:
        row = await run_in_threadpool(
            partial(
                svc.store.put_customer,
                customer_id,
                currency=body.currency,
                credit_limit=body.credit_limit,
                open_receivables=body.open_receivables,
                days_past_due=body.days_past_due,
                facts=facts,
            )
        )
    except ValueError as exc:
        raise store_refusal(exc) from None
    return JSONResponse(to_json(row))


@router.get(
    "/v1/customers/{customer_id}",
    summary="A customer's position",
    responses=problems("GET", "/v1/customers/{customer_id}"),
)
def get_customer(
    customer_id: Annotated[str, Path(max_length=200)],
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/customers/{customer_id}")],
) -> JSONResponse:
    row = svc.store.get_customer(customer_id)
    if row is None:
        raise Problem("unknown_customer", f"no customer {customer_id!r}")
    return JSONResponse(to_json(row))


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
    from api.store import EventConflict

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
        result = await run_in_threadpool(svc.store.apply_event, customer_id, event, who.name)
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


@router.post(
    "/v1/customers/import",
    summary="Create or replace customers from CSV (all or nothing)",
    responses=problems("POST", "/v1/customers/import"),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def import_customers(
    request: Request,
    svc: Svc,
    _: Annotated[Caller, caller("POST", "/v1/customers/import")],
) -> JSONResponse:
    from api.store import ImportErrors

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/csv":
        raise Problem(
            "unsupported_media_type", "send the customers as text/csv (UTF-8)", status=415
        )
    data = await read_body(request, svc.import_bytes)
    try:
        rows = parse_customer_csv(data, svc.policy)
        count = await run_in_threadpool(svc.store.import_customers, rows)
    except ImportErrors as exc:
        n = len(exc.errors)
        raise Problem(
            "invalid_request",
            f"{n} problem{'s' if n != 1 else ''} in the CSV; nothing was imported",
            errors=[
                {
                    "path": f"line {e['line']}" + (f".{e['column']}" if e["column"] else ""),
                    "code": "invalid_row",
                    "message": e["problem"],
                    "line": e["line"],
                    "column": e["column"],
                }
                for e in exc.errors
            ],
        ) from None
    return JSONResponse({"imported": count})
