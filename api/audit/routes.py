"""Audit: ``GET /v1/audit/verify`` walks the hash chains and checks the ledger's consistency."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.audit.models import AuditReport
from api.core import examples as ex
from api.core.auth import Caller
from api.core.bodies import to_json
from api.core.params import KNOWN_QUERY
from api.core.routing import caller, problems
from api.core.service import Service, service

router = APIRouter()
Svc = Annotated[Service, Depends(service)]


@router.get(
    "/v1/audit/verify",
    tags=["audit"],
    operation_id="verifyAudit",
    summary="Verify the hash chains of the decision log and the ledger events",
    description="Walks both hash chains up to their stored heads and checks the ledger's "
    "consistency; `ok` is true only if all of it is intact. Anchor `head_seq` / `head_hash` "
    "outside the database.",
    response_model=AuditReport,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {"description": "The report", **ex.content(intact=ex.AUDIT)},
        **problems("GET", "/v1/audit/verify"),
    },
)
def audit_verify(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/audit/verify")],
    _known: Annotated[None, KNOWN_QUERY],
) -> AuditReport:
    return AuditReport.model_validate(to_json(svc.store.audit.verify_chain()))
