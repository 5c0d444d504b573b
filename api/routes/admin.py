"""Exchange rates, the audit chain and the policy in force."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.auth import Caller
from api.bodies import (
    FxRatesBody,
    json_body,
    json_body_doc,
    store_refusal,
    to_json,
)
from api.problems import Problem
from api.routes import caller, problems
from api.service import Service, service

router = APIRouter()
Svc = Annotated[Service, Depends(service)]


@router.put(
    "/v1/fx-rates",
    tags=["fx"],
    summary="Load exchange rates into the policy's currency",
    responses=problems("PUT", "/v1/fx-rates"),
    openapi_extra=json_body_doc(FxRatesBody),
)
async def put_fx_rates(
    request: Request,
    svc: Svc,
    _: Annotated[Caller, caller("PUT", "/v1/fx-rates")],
) -> JSONResponse:
    policy = svc.policy
    body = await json_body(request, FxRatesBody, svc.max_bytes)
    if body.base != policy.currency:
        raise Problem(
            "invalid_request",
            f"rates convert into the policy's currency {policy.currency}",
            errors=[
                {
                    "path": "base",
                    "code": "currency_mismatch",
                    "message": f"base must be {policy.currency}",
                }
            ],
        )
    errors = [
        {"path": f"rates[{i}].currency", "code": "invalid_value", "message": "same as the base"}
        for i, r in enumerate(body.rates)
        if r.currency == body.base
    ]
    first: dict[tuple[str, date], int] = {}
    for i, r in enumerate(body.rates):
        j = first.setdefault((r.currency, r.as_of), i)
        if j != i:
            errors.append(
                {
                    "path": f"rates[{i}]",
                    "code": "duplicate_rate",
                    "message": f"rates[{i}] duplicates rates[{j}] ({r.currency} on "
                    f"{r.as_of.isoformat()}); send one rate per currency and date",
                }
            )
    if errors:
        raise Problem("invalid_request", "invalid rates; nothing was stored", errors=errors)
    rates = [r.model_dump() for r in body.rates]
    try:
        count = await run_in_threadpool(svc.store.put_fx_rates, body.base, rates)
    except ValueError as exc:
        raise store_refusal(exc) from None
    return JSONResponse({"base": body.base, "stored": count})


@router.get(
    "/v1/audit/verify",
    tags=["audit"],
    summary="Verify the hash chains of the decision log and the ledger events",
    responses=problems("GET", "/v1/audit/verify"),
)
def audit_verify(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/audit/verify")],
) -> JSONResponse:
    return JSONResponse(to_json(svc.store.verify_chain()))


@router.get(
    "/v1/policy",
    tags=["policy"],
    summary="The policy in force",
    responses=problems("GET", "/v1/policy"),
)
def get_policy(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/policy")],
) -> JSONResponse:
    policy = svc.policy
    return JSONResponse(
        {
            "id": policy.id,
            "version": policy.version,
            "sha256": policy.sha256,
            "currency": policy.currency,
            "rules": policy.rule_count,
            "description": policy.description,
        }
    )
