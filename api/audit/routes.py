"""Audit: ``GET /v1/audit/verify`` walks the hash chains and checks the ledger's consistency."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.core.auth import Caller
from api.core.bodies import to_json
from api.core.routing import caller, problems
from api.core.service import Service, service

router = APIRouter()
Svc = Annotated[Service, Depends(service)]


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
    return JSONResponse(to_json(svc.store.audit.verify_chain()))
