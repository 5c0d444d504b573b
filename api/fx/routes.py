"""Exchange rates into the policy currency: ``PUT /v1/fx-rates``."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.core import examples as ex
from api.core.auth import Caller
from api.core.bodies import json_body, json_body_doc, store_refusal
from api.core.problems import Problem
from api.core.routing import caller, problems
from api.core.service import Service, service
from api.fx.models import FxRatesBody, FxRatesResult

router = APIRouter()
Svc = Annotated[Service, Depends(service)]


@router.put(
    "/v1/fx-rates",
    tags=["fx"],
    operation_id="putFxRates",
    summary="Load exchange rates into the policy's currency",
    description="`rate` is units of `base` (the policy currency) for ONE unit of `currency` "
    "on `as_of`: base EUR, USD rate \"0.92\" means 1 USD = 0.92 EUR. Inserted or replaced "
    "by (base, currency, as_of), all in one transaction.",
    response_model=FxRatesResult,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {"description": "How many rates were stored", **ex.content(one=ex.FX_RESULT)},
        **problems("PUT", "/v1/fx-rates"),
    },
    openapi_extra=json_body_doc(FxRatesBody, ex.named(usd=ex.FX_BODY)),
)
async def put_fx_rates(
    request: Request,
    svc: Svc,
    _: Annotated[Caller, caller("PUT", "/v1/fx-rates")],
) -> FxRatesResult:
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
    return FxRatesResult(base=body.base, stored=count)
