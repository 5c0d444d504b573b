"""The policy in force: ``GET /v1/policy``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.core import examples as ex
from api.core.auth import Caller
from api.core.params import KNOWN_QUERY
from api.core.routing import caller, problems
from api.core.service import Service, service
from api.policies.models import PolicyInForce

router = APIRouter()
Svc = Annotated[Service, Depends(service)]


@router.get(
    "/v1/policy",
    tags=["policy"],
    operation_id="getPolicy",
    summary="The policy in force",
    response_model=PolicyInForce,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {"description": "The policy", **ex.content(policy=ex.POLICY_IN_FORCE)},
        **problems("GET", "/v1/policy"),
    },
)
def get_policy(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/policy")],
    _known: Annotated[None, KNOWN_QUERY],
) -> PolicyInForce:
    policy = svc.policy
    return PolicyInForce.model_validate(
        {
            "id": policy.id,
            "version": policy.version,
            "sha256": policy.sha256,
            "currency": policy.currency,
            "rules": policy.rule_count,
            "description": policy.description,
        }
    )
