"""Customers: create/replace a customer's credit position, read it, import customers from
CSV (``POST /v1/customer-imports``; ``POST /v1/customers/import`` is its deprecated alias).
(Their ledger events are ``api.ledger.routes``.)"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic_core import PydanticCustomError

from api.core import examples as ex
from api.core.auth import Caller
from api.core.bodies import (
    decimals_check,
    json_body,
    json_body_doc,
    money_facts,
    parse_customer_id,
    read_body,
    store_refusal,
    to_json,
)
from api.core.params import KNOWN_QUERY
from api.core.problems import Problem, problem_response
from api.core.routing import caller, not_reserved, problems
from api.core.schemas import CUSTOMER_ID_SCHEMA
from api.core.service import Service, service
from api.customers.csvimport import parse_customer_csv
from api.customers.exceptions import ImportErrors
from api.customers.models import (
    RESERVED_CUSTOMER_IDS,
    CustomerBody,
    CustomerPosition,
    ImportResult,
    check_customer_facts,
    customer_currency_check,
    reserved_customer_id,
)

router = APIRouter(tags=["customers"])
Svc = Annotated[Service, Depends(service)]

#: the ``{customer_id}`` path parameter (its pattern is documented, not enforced by FastAPI:
#: the routes' own checks answer with their codes and messages)
CUSTOMER_ID = Path(
    max_length=200,
    description="The customer id: one URL path segment; `import` is reserved",
    json_schema_extra={
        "pattern": CUSTOMER_ID_SCHEMA["pattern"],
        "minLength": 1,
        "not": {"enum": sorted(RESERVED_CUSTOMER_IDS)},
    },
    openapi_examples={"customer": {"value": ex.CUSTOMER_ID}},
)
_CUSTOMER_LINKS = {
    "getCustomer": {
        "operationId": "getCustomer",
        "parameters": {"customer_id": "$response.body#/customer_id"},
        "description": "The customer's position",
    },
}


@router.put(
    "/v1/customers/{customer_id}",
    operation_id="putCustomer",
    summary="Create or replace a customer's credit position",
    description="Sets `currency` and `credit_limit`; `open_receivables`, `days_past_due` and "
    "`facts` are set when sent and kept when left out (a new customer: 0, 0, none). The "
    "open orders and the credit balance belong to the ledger.",
    response_model=CustomerPosition,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {
            "description": "The customer's position",
            **ex.content(customer=ex.CUSTOMER),
            "links": _CUSTOMER_LINKS,
        },
        **problems("PUT", "/v1/customers/{customer_id}"),
    },
    openapi_extra=json_body_doc(CustomerBody, ex.named(customer=ex.CUSTOMER_BODY)),
)
async def put_customer(
    request: Request,
    customer_id: Annotated[str, CUSTOMER_ID],
    svc: Svc,
    _reserved: Annotated[None, Depends(not_reserved)],
    _: Annotated[Caller, caller("PUT", "/v1/customers/{customer_id}")],
) -> CustomerPosition:
    policy = svc.policy
    try:
        reserved_customer_id(parse_customer_id(customer_id))
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
                svc.store.customers.put,
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
    return CustomerPosition.model_validate(to_json(row))


@router.get(
    "/v1/customers/{customer_id}",
    operation_id="getCustomer",
    summary="A customer's position",
    response_model=CustomerPosition,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {"description": "The customer's position", **ex.content(customer=ex.CUSTOMER)},
        **problems("GET", "/v1/customers/{customer_id}"),
    },
)
def get_customer(
    customer_id: Annotated[str, CUSTOMER_ID],
    svc: Svc,
    _reserved: Annotated[None, Depends(not_reserved)],
    _: Annotated[Caller, caller("GET", "/v1/customers/{customer_id}")],
    _known: Annotated[None, KNOWN_QUERY],
) -> CustomerPosition:
    row = svc.store.customers.get(customer_id)
    if row is None:
        raise Problem("unknown_customer", f"no customer {customer_id!r}")
    return CustomerPosition.model_validate(to_json(row))


_CSV_BODY = {
    "requestBody": {
        "required": True,
        "description": "UTF-8 CSV (a BOM is allowed), a header row, then one customer per "
        "row: `customer_id`, `currency`, `credit_limit` required; `open_receivables`, "
        "`days_past_due` and `customer.<fact>` columns optional (an empty cell keeps the "
        "stored value)",
        "content": {
            # format binary: a file's bytes (client generators send it as it is)
            "text/csv": {
                "schema": {"type": "string", "format": "binary"},
                "examples": ex.named(csv=ex.IMPORT_CSV),
            }
        },
    }
}
_IMPORTED = {
    200: {"description": "How many customers were created or updated"}
    | ex.content(one={"imported": 1}),
}


async def import_customers(request: Request, svc: Service) -> ImportResult:
    """Create or replace customers from a CSV body, all or nothing (both import paths)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/csv":
        raise Problem(
            "unsupported_media_type", "send the customers as text/csv (UTF-8)", status=415
        )
    data = await read_body(request, svc.import_bytes)
    try:
        rows = parse_customer_csv(data, svc.policy)
        count = await run_in_threadpool(svc.store.customers.import_rows, rows)
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
    return ImportResult(imported=count)


@router.post(
    "/v1/customer-imports",
    operation_id="importCustomers",
    summary="Create or replace customers from CSV (all or nothing)",
    response_model=ImportResult,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={**_IMPORTED, **problems("POST", "/v1/customer-imports")},
    openapi_extra=_CSV_BODY,
)
async def post_customer_import(
    request: Request,
    svc: Svc,
    _: Annotated[Caller, caller("POST", "/v1/customer-imports")],
) -> ImportResult:
    return await import_customers(request, svc)


@router.post(
    "/v1/customers/import",
    operation_id="importCustomersDeprecated",
    summary="Deprecated: the same as POST /v1/customer-imports",
    description="The customer import's old path, kept as an alias: use "
    "`POST /v1/customer-imports`. `import` is not a customer id: `GET` and `PUT` on this "
    "path answer 405.",
    deprecated=True,
    response_model=ImportResult,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={**_IMPORTED, **problems("POST", "/v1/customers/import")},
    openapi_extra=_CSV_BODY,
)
async def post_customer_import_alias(
    request: Request,
    svc: Svc,
    _: Annotated[Caller, caller("POST", "/v1/customers/import")],
) -> ImportResult:
    return await import_customers(request, svc)


async def on_unknown_customer(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler of ``UnknownCustomer``: 404 ``unknown_customer`` (on a POST,
    with the error at ``customer_id``)."""
    cid = getattr(exc, "customer_id", "")
    if cid in RESERVED_CUSTOMER_IDS:
        detail = f"no customer {cid!r}: {cid!r} is reserved, never a customer id"
    elif cid:
        detail = f"no customer {cid!r} in the ledger; create it with PUT /v1/customers/{cid}"
    else:
        detail = "unknown customer"
    return problem_response(
        Problem(
            "unknown_customer",
            detail,
            errors=[
                {
                    "path": "customer_id",
                    "code": "unknown_customer",
                    "message": "create the customer first (PUT /v1/customers/{id})",
                }
            ]
            if request.method == "POST"
            else [],
        )
    )
