"""Operations: liveness, readiness and Prometheus metrics. No key needed; no customer
data in any answer. Each also answers HEAD (load balancers probe with it): the status and
headers of the GET, no body (the HEAD routes are left out of the OpenAPI document, which
would otherwise list each operation twice under one id)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from api.core import examples as ex
from api.core.problems import Problem, problem_response
from api.core.routing import problem_responses
from api.core.service import Service, service
from api.ops.models import Health, Readiness

log = logging.getLogger("creditgate.api")
router = APIRouter(tags=["operations"])
Svc = Annotated[Service, Depends(service)]


@router.get(
    "/healthz",
    operation_id="getHealth",
    summary="Liveness",
    response_model=Health,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={200: {"description": "The process answers", **ex.content(ok=ex.HEALTH)}},
)
@router.head("/healthz", include_in_schema=False)
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Readiness: database and policy",
    response_model=Readiness,
    response_model_exclude_unset=True,  # fields left out stay out (no nulls added)
    responses={
        200: {"description": "Ready to decide", **ex.content(ready=ex.READY)},
        **problem_responses(503),
    },
)
@router.head("/readyz", include_in_schema=False)
def readyz(svc: Svc) -> JSONResponse:
    try:
        svc.store.ping()
    except Exception as exc:
        log.warning("not ready: database", extra={"error": type(exc).__name__})
        return problem_response(
            Problem("not_ready", "the database does not answer", headers={"Retry-After": "5"})
        )
    policy = svc.policy
    return JSONResponse(
        {
            "status": "ready",
            "policy": {"id": policy.id, "version": policy.version, "sha256": policy.sha256},
        }
    )


@router.get(
    "/metrics",
    operation_id="getMetrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format (`text/plain; version=...`, "
            "as the installed prometheus-client writes it)",
            "content": {
                "text/plain": {"schema": {"type": "string"}, "examples": ex.named(text=ex.METRICS)}
            },
        }
    },
)
@router.head("/metrics", include_in_schema=False)
def prometheus(svc: Svc) -> Response:
    data, content_type = svc.metrics.render()
    return Response(data, media_type=content_type)
