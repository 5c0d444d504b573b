"""The policy in force: ``GET /v1/policy``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.core.auth import Caller
from api.core.routing import caller, problems
from api.core.service import Service, service

router = APIRouter()
Svc = Annotated[Service, Depends(service)]


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
