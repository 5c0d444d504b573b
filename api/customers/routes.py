"""Customers: create/replace (PUT, conditional) or change (PATCH) a customer's credit
position, read it with its ETag, import customers from
CSV (``POST /v1/customer-imports``; ``POST /v1/customers/import`` is its deprecated alias).
(Their ledger events are ``api.ledger.routes``.)"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic_core import PydanticCustomError

from api.core import examples as ex
from api.core.auth import Caller
from api.core.bodies import (
    json_body,
    json_body_doc,
    parse_body,
    parse_customer_id,
    read_body,
    require_json,
    store_refusal,
    to_json,
    validate_body,
    validate_errors,
)
from api.core.database import UnreadableRecord
from api.core.params import KNOWN_QUERY, Cursor, PageLimit
from api.core.problems import Problem, problem_response, unreadable_problem
from api.core.routing import caller, not_reserved, problems
from api.core.schemas import CUSTOMER_ID_SCHEMA
from api.core.service import Service, service
from api.customers.conditions import Preconditions
from api.customers.csvimport import parse_customer_csv
from api.customers.exceptions import ImportErrors, PreconditionFailed
from api.customers.models import (
    RESERVED_CUSTOMER_IDS,
    CustomerBody,
    CustomerPatch,
    CustomerPosition,
    HistoryPage,
    ImportResult,
    reserved_customer_id,
)
from api.customers.updates import merge_patch, patch_nulls, replacement

router = APIRouter(tags=["customers"])
MERGE_PATCH = "application/merge-patch+json"
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


#: the ``ETag`` response header of the routes that answer a customer
_ETAG_HEADER = {
    "ETag": {
        "description": "The record's strong validator: send it as `If-Match` to `PUT` "
        "(required) or `PATCH` (optional) so that no change made since is overwritten",
        "schema": {"type": "string", "pattern": '^"[0-9a-f]{32}"$'},
    }
}
IF_MATCH = Header(
    alias="If-Match",
    description="The `ETag` of the record the caller read (or `*`: any existing record); "
    "the write is refused with 412 if the record changed since",
    openapi_examples={"etag": {"value": '"3f1c9a0b5d7e42c18a6b0f2e9d4c7a15"'}},
)
IF_NONE_MATCH = Header(
    alias="If-None-Match",
    description="`*`: create the customer only if it does not exist yet (412 if it does)",
    openapi_examples={"create": {"value": "*"}},
)


def _checked_id(customer_id: str) -> str:
    try:
        return reserved_customer_id(parse_customer_id(customer_id))
    except PydanticCustomError as exc:
        raise Problem(
            "invalid_request",
            "the customer id is not valid",
            errors=[{"path": "customer_id", "code": exc.type, "message": exc.message()}],
        ) from None


def _preconditions(if_match: str | None, if_none_match: str | None) -> Preconditions:
    try:
        return Preconditions.of(if_match, if_none_match)
    except ValueError as exc:
        header = str(exc).split(":", 1)[0]
        raise Problem(
            "invalid_request",
            f"the {header} header is not valid",
            errors=[{"path": f"header.{header}", "code": "invalid_value", "message": str(exc)}],
        ) from None


def _who(who: Caller) -> dict[str, Any]:
    return {"key_id": who.key_id, "role": who.role}


async def _write(
    svc: Service,
    customer_id: str,
    build: Any,
    conditions: Preconditions,
    *,
    source: str,
    who: Caller,
    reason: str | None,
) -> JSONResponse:
    """``Customers.write`` in a worker thread (the change and its history record in one
    transaction); the position with its ``ETag``."""
    try:
        row, tag = await run_in_threadpool(
            partial(
                svc.store.customers.write,
                customer_id,
                build,
                conditions=conditions,
                must_exist=source == "patch",
                source=source,
                who=_who(who),
                reason=reason,
            )
        )
    except PreconditionFailed as exc:
        raise Problem("precondition_failed", f"{exc}; nothing was changed") from None
    except ValueError as exc:
        raise store_refusal(exc) from None
    body = CustomerPosition.model_validate(to_json(row)).model_dump(mode="json")
    return JSONResponse(body, headers={"ETag": tag})


@router.put(
    "/v1/customers/{customer_id}",
    operation_id="putCustomer",
    summary="Create or replace a customer's credit position",
    description="Creates the customer (`If-None-Match: *`) or replaces it (`If-Match` with "
    "the `ETag` of the record you read: 412 if it changed since); without either header 428. "
    "Sets `currency`, `credit_limit` and the `facts` as a whole (required when replacing: a "
    "fact is never dropped by leaving the field out; `{}` for none); `open_receivables` and "
    "`days_past_due` are set when sent and kept when left out (a new customer: 0, 0). The "
    "open orders and the credit balance belong to the ledger. To change some fields only, "
    "use `PATCH`.",
    response_model=CustomerPosition,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {
            "description": "The customer's position",
            "headers": _ETAG_HEADER,
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
    who: Annotated[Caller, caller("PUT", "/v1/customers/{customer_id}")],
    if_match: Annotated[str | None, IF_MATCH] = None,
    if_none_match: Annotated[str | None, IF_NONE_MATCH] = None,
) -> CustomerPosition:
    _checked_id(customer_id)
    conditions = _preconditions(if_match, if_none_match)
    body = await json_body(request, CustomerBody, svc.max_bytes)
    build = replacement(svc.policy, body)
    if not conditions.guards_replace:
        raise Problem(
            "precondition_required",
            "PUT replaces the whole customer: send 'If-Match' with the ETag of the record "
            "you read (GET /v1/customers/{id}), or 'If-None-Match: *' to create a new one; "
            "to change some fields only, use PATCH",
        )
    return await _write(  # type: ignore[return-value]
        svc, customer_id, build, conditions, source="put", who=who, reason=body.reason
    )


_PATCH_EXAMPLES = ex.named(
    limit=("Raise the credit limit (nothing else changes)", {"credit_limit": "60000.00"}),
    unblock=("Lift a blacklist", {"facts": {"blacklisted": False}}),
    remove=("Remove a fact", {"facts": {"country_risk": None}}),
)
_PATCH_BODY = json_body_doc(CustomerPatch, _PATCH_EXAMPLES)
_PATCH_BODY["requestBody"]["content"] = {
    MERGE_PATCH: _PATCH_BODY["requestBody"]["content"]["application/json"],
    **_PATCH_BODY["requestBody"]["content"],
}


@router.patch(
    "/v1/customers/{customer_id}",
    operation_id="patchCustomer",
    summary="Change some fields of a customer (JSON Merge Patch)",
    description="A JSON Merge Patch (RFC 7396; `application/merge-patch+json` or "
    "`application/json`): only the fields named change, a field left out keeps its stored "
    "value. In `facts`, a fact set to `null` is removed; `null` on another field is 422. The "
    "merged customer is checked as a `PUT` body is. `If-Match` (optional): 412 if the record "
    "changed since it was read. The customer must exist (404).",
    response_model=CustomerPosition,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {
            "description": "The customer's position after the change",
            "headers": _ETAG_HEADER,
            **ex.content(customer=ex.CUSTOMER),
        },
        **problems("PATCH", "/v1/customers/{customer_id}"),
    },
    openapi_extra=_PATCH_BODY,
)
async def patch_customer(
    request: Request,
    customer_id: Annotated[str, CUSTOMER_ID],
    svc: Svc,
    _reserved: Annotated[None, Depends(not_reserved)],
    who: Annotated[Caller, caller("PATCH", "/v1/customers/{customer_id}")],
    if_match: Annotated[str | None, IF_MATCH] = None,
    if_none_match: Annotated[str | None, IF_NONE_MATCH] = None,
) -> CustomerPosition:
    _checked_id(customer_id)
    conditions = _preconditions(if_match, if_none_match)
    require_json(request, (MERGE_PATCH, "application/json"))
    data = parse_body(await read_body(request, svc.max_bytes))
    if isinstance(data, dict):
        nulls = patch_nulls(data)
        if nulls:
            rest = validate_errors(CustomerPatch, {k: v for k, v in data.items() if v is not None})
            n = len(nulls) + len(rest)
            raise Problem(
                "invalid_request",
                f"{n} problem{'s' if n != 1 else ''} with the patch; nothing was changed",
                errors=[*nulls, *rest],
            )
    patch = validate_body(CustomerPatch, data)
    build = merge_patch(svc.policy, patch)
    return await _write(  # type: ignore[return-value]
        svc, customer_id, build, conditions, source="patch", who=who, reason=patch.reason
    )


@router.get(
    "/v1/customers/{customer_id}",
    operation_id="getCustomer",
    summary="A customer's position",
    response_model=CustomerPosition,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {
            "description": "The customer's position",
            "headers": _ETAG_HEADER,
            **ex.content(customer=ex.CUSTOMER),
        },
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
    found = svc.store.customers.read(customer_id)
    if found is None:
        raise Problem("unknown_customer", f"no customer {customer_id!r}")
    body = CustomerPosition.model_validate(to_json(found[0])).model_dump(mode="json")
    return JSONResponse(body, headers={"ETag": found[1]})  # type: ignore[return-value]


@router.get(
    "/v1/customers/{customer_id}/history",
    operation_id="getCustomerHistory",
    summary="The changes of a customer's master data (newest first)",
    description="Every change made by `PUT`, `PATCH` or an import: who (the API key's id, "
    "role and name), when (the service clock), old → new per field (`facts.<name>` per "
    "fact) and the reason; hash-chained (chain `customer_history`, checked by "
    "`GET /v1/audit/verify`). Ledger events are not master data: they are in the `ledger` "
    "chain. `next_cursor` pages on. An unknown customer without history: 404.",
    response_model=HistoryPage,
    responses={
        200: {"description": "One page", **ex.content(page=ex.CUSTOMER_HISTORY)},
        **problems("GET", "/v1/customers/{customer_id}/history"),
    },
)
def get_customer_history(
    customer_id: Annotated[str, CUSTOMER_ID],
    svc: Svc,
    _reserved: Annotated[None, Depends(not_reserved)],
    _: Annotated[Caller, caller("GET", "/v1/customers/{customer_id}/history")],
    _known: Annotated[None, KNOWN_QUERY],
    cursor: Cursor = None,
    limit: PageLimit = 50,
) -> JSONResponse:
    try:
        items, next_cursor = svc.store.customer_history.page(
            customer_id, cursor=cursor, limit=limit
        )
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    if not items and svc.store.customers.get(customer_id) is None:
        raise Problem("unknown_customer", f"no customer {customer_id!r}")
    return JSONResponse(to_json({"items": items, "next_cursor": next_cursor}))


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


async def import_customers(request: Request, svc: Service, who: Caller) -> ImportResult:
    """Create or replace customers from a CSV body, all or nothing (both import paths)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/csv":
        raise Problem(
            "unsupported_media_type", "send the customers as text/csv (UTF-8)", status=415
        )
    data = await read_body(request, svc.import_bytes)
    try:
        rows = parse_customer_csv(data, svc.policy)
        reason = f"import sha256:{hashlib.sha256(data).hexdigest()[:16]}"
        count = await run_in_threadpool(
            partial(svc.store.customers.import_rows, rows, who=_who(who), reason=reason)
        )
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
    who: Annotated[Caller, caller("POST", "/v1/customer-imports")],
) -> ImportResult:
    return await import_customers(request, svc, who)


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
    who: Annotated[Caller, caller("POST", "/v1/customers/import")],
) -> ImportResult:
    return await import_customers(request, svc, who)


async def on_unknown_customer(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler of ``UnknownCustomer``: 404 ``unknown_customer`` (on a POST,
    with the error at ``customer_id``)."""
    cid = getattr(exc, "customer_id", "")
    if cid in RESERVED_CUSTOMER_IDS:
        detail = f"no customer {cid!r}: {cid!r} is reserved, never a customer id"
    elif cid:
        detail = (
            f"no customer {cid!r} in the ledger; create it with PUT /v1/customers/{cid} "
            "and If-None-Match: *"
        )
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
