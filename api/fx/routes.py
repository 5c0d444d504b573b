"""Exchange rates into the policy currency: ``PUT /v1/fx-rates``."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.core.auth import Caller
from api.core.bodies import json_body, json_body_doc, store_refusal
from api.core.problems import Problem
from api.core.routing import caller, problems
from api.core.service import Service, service
from api.fx.models import FxRatesBody

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
        count = await run_in_threadpool(svc.store.fx.put_rates, body.base, rates)
    except ValueError as exc:
        raise store_refusal(exc) from None
    return JSONResponse({"base": body.base, "stored": count})
