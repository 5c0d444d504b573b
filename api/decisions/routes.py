"""Decisions: decide an order (``POST /v1/decisions``), read, list, export and replay the
decision log."""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.core import examples as ex
from api.core.auth import Caller
from api.core.bodies import (
    decimals_check,
    json_body,
    json_body_doc,
    money_facts,
    store_refusal,
    to_json,
)
from api.core.database import UnreadableRecord
from api.core.export import export_responses, opened
from api.core.params import KNOWN_QUERY, Cursor, PageLimit
from api.core.problems import Problem, unreadable_problem
from api.core.routing import authorize, caller, problems
from api.core.service import Service, service
from api.decisions.deciding import DecideJob
from api.decisions.exceptions import OrderConflict
from api.decisions.export import stream
from api.decisions.masking import Hidden, as_shown, mask_decision, masker, masking_of
from api.decisions.models import (
    DecisionAnswer,
    DecisionPage,
    DecisionRecord,
    DecisionRequest,
    ReplayResult,
    currency_check,
)
from api.decisions.params import DecisionFilters
from api.decisions.replay import differences
from api.fx.exceptions import FxRateMissing
from engine.decision import Decision
from engine.evaluate import evaluate
from engine.inputs import InputError, InputErrors

log = logging.getLogger("creditgate.api")
router = APIRouter(tags=["decisions"])
Svc = Annotated[Service, Depends(service)]


DECISION_ID = Path(
    max_length=200,
    description="The decision id (`decision_id` of the answer to POST /v1/decisions)",
    openapi_examples={"refer": {"value": ex.DECISION_ID}},
)
#: the decision's read and replay from the answer's decision_id (OpenAPI links)
_DECISION_LINKS = {
    "getDecision": {
        "operationId": "getDecision",
        "parameters": {"decision_id": "$response.body#/decision_id"},
        "description": "The recorded decision",
    },
    "replayDecision": {
        "operationId": "replayDecision",
        "parameters": {"decision_id": "$response.body#/decision_id"},
        "description": "Re-evaluate it under the policy that made it",
    },
}


_authorize_decision = authorize("POST", "/v1/decisions")


@router.post(
    "/v1/decisions",
    operation_id="decideOrder",
    summary="Decide one order (approve / refer / decline) and record it",
    description="Evaluates the order under the policy in force with the customer's position "
    "from the ledger, reserves an approved amount and records the decision in the "
    "hash-chained log, in one transaction. Idempotent by `order_id`: the same order again "
    "answers the stored decision (`kind: repeat`). The answer is the decision as recorded, "
    "unmasked, with `kind` and, for an order in another currency, `fx`.",
    response_model=DecisionAnswer,
    responses={
        200: {
            "description": "The decision as recorded",
            **ex.content(
                refer=("An order over the credit limit: referred", ex.DECISION_ANSWER),
                converted=("An order in USD, converted into EUR", ex.DECISION_ANSWER_USD),
            ),
            "links": _DECISION_LINKS,
        },
        **problems("POST", "/v1/decisions"),
    },
    openapi_extra=json_body_doc(
        DecisionRequest,
        ex.named(
            refer=("The worked example: EUR 10,000.00 over the limit", ex.DECISION_REQUEST),
            converted=("An order in USD (with rates loaded)", ex.DECISION_REQUEST_USD),
            facts=("With a policy input the ledger does not hold", ex.DECISION_REQUEST_FACTS),
        ),
    ),
)
async def post_decision(request: Request) -> Response:
    # The service and the key check without FastAPI dependencies: on the hot path their
    # machinery cost more than the check itself (the route is in ROUTES all the same).
    svc: Service = request.app.state.service
    who = await _authorize_decision(request)
    policy, store = svc.policy, svc.store
    req = await json_body(request, DecisionRequest, svc.max_bytes)
    today = svc.today()
    if req.order_date is not None:
        order_date_check(req.order_date, today, svc.setting("max_order_age_days"))
    if req.currency != policy.currency and not await run_in_threadpool(
        store.fx.has_rates, policy.currency, req.currency
    ):
        currency_check(policy, req.currency)  # no rate of this currency at all
    decimals_check(policy, req.currency, amount=req.amount)  # the ORDER currency's unit
    # Every fact checked against the policy here, before the writer takes any lock: a
    # caller sending junk facts is refused without holding up other customers' decisions.
    errors = money_facts(policy, req.facts, "facts")
    inexact = {e["path"] for e in errors}
    refused = svc.compiled.validate.check_values(
        {k: v for k, v in req.facts.items() if f"facts.{k}" not in inexact}
    )
    if refused:
        raise InputErrors([*(InputError(e["path"].removeprefix("facts."), e["code"],
                                        e["message"]) for e in errors), *refused])
    if errors:
        raise Problem("invalid_request", "money facts must be exact", errors=errors)
    order = {
        "order_id": req.order_id,
        "customer_id": req.customer_id,
        "amount": req.amount,
        "currency": req.currency,
        "payment_term_days": req.payment_term_days,
        "facts": req.facts,
    }
    if req.order_date is not None:
        order["order_date"] = req.order_date
    job = DecideJob(
        order,
        svc.evaluate,
        who.name,
        decision_currency=policy.currency,
        minor_units=policy.minor_units,
        today=today,
        max_rate_age_days=svc.setting("max_rate_age_days"),
    )
    start = time.perf_counter()
    try:
        decided = await svc.writer.decide(job)
    except InputErrors:
        raise
    except FxRateMissing as exc:
        raise Problem(
            "fx_rate_missing",
            str(exc).removeprefix("currency: "),
            status=422,
            title="No exchange rate for the order's currency and date",
            errors=[{"path": "currency", "code": "fx_rate_missing", "message": str(exc)}],
        ) from None
    except OrderConflict as exc:
        raise order_conflict(exc) from None
    except ValueError as exc:
        raise store_refusal(exc) from None
    svc.metrics.decision_seconds.observe(time.perf_counter() - start)
    svc.metrics.decisions.labels(decided.outcome, decided.kind).inc()
    request.state.decision_id = decided.decision_id
    log.info(
        "decision",
        extra={
            "request_id": request.state.request_id,
            "decision_id": decided.decision_id,
            "order_id": req.order_id,
            "customer_id": req.customer_id,
            "outcome": decided.outcome,
            "kind": decided.kind,
            "policy_version": decided.policy_version,
            "caller": who.name,
        },
    )
    # The stored decision's bytes, with kind (and, for an order in another currency, the
    # conversion as recorded: original amount, rate, its date, rounding) put in front.
    return Response(decided.response(), media_type="application/json")


def order_date_check(order_date: date, today: date, max_age_days: int) -> None:
    """Refuse (422, path ``order_date``) an order date after ``today`` (UTC) or more than
    ``max_age_days`` days before it: the caller may not shop for an exchange rate."""
    oldest = today - timedelta(days=max_age_days)
    if order_date > today:
        code, message = (
            "order_date_in_future",
            f"{order_date.isoformat()} is after today ({today.isoformat()}, UTC)",
        )
    elif order_date < oldest:
        code, message = (
            "order_date_too_old",
            f"{order_date.isoformat()} is more than {max_age_days} days before today "
            f"({today.isoformat()}, UTC); the oldest accepted is {oldest.isoformat()}",
        )
    else:
        return
    raise Problem(
        "invalid_request",
        f"order_date: {message}",
        errors=[{"path": "order_date", "code": code, "message": message}],
    )


@router.get(
    "/v1/decisions",
    operation_id="listDecisions",
    summary="List decisions (newest first)",
    description="Records of the decision log, newest first, sensitive inputs masked; "
    "`next_cursor` pages on.",
    response_model=DecisionPage,
    responses={
        200: {"description": "One page", **ex.content(page=ex.PAGE)},
        **problems("GET", "/v1/decisions"),
    },
)
def list_decisions(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/decisions")],
    _known: Annotated[None, KNOWN_QUERY],
    filters: Annotated[DecisionFilters, Depends()],
    cursor: Cursor = None,
    limit: PageLimit = 50,
) -> JSONResponse:
    mask = masker(svc)
    try:
        rows, next_cursor = svc.store.decisions.search(
            cursor=cursor, limit=limit, **filters.as_kwargs()
        )
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    items = [mask(row) for row in rows]
    return JSONResponse(to_json({"items": items, "next_cursor": next_cursor}))


@router.get(
    "/v1/decisions/export",
    operation_id="exportDecisions",
    summary="Export the decision log (CSV or JSON lines), sensitive inputs masked",
    description="Streamed in `seq` order. The last line says whether the export is complete: "
    '`{"complete": true, "records": N}` (jsonl), the row `#complete,N` (csv); a failure '
    'mid-stream ends it with `{"complete": false, ...}` (`#incomplete,N,error`) and aborts '
    "the connection.",
    response_class=Response,
    responses={
        200: export_responses(
            "jsonl: a DecisionRecord as JSON; csv: its columns, JSON columns as JSON text",
            ex.EXPORT_JSONL,
            ex.EXPORT_CSV,
        ),
        **problems("GET", "/v1/decisions/export"),
    },
)
def export_decisions(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/decisions/export")],
    _known: Annotated[None, KNOWN_QUERY],
    filters: Annotated[DecisionFilters, Depends()],
    format: Literal["csv", "jsonl"] = "jsonl",  # noqa: A002 - the query name
) -> Response:
    mask = masker(svc)
    # The first batch is read before the answer starts: an unreadable record in it is a
    # problem response, not a 200 with a short body.
    records = opened(svc.store.decisions.iterate(**filters.as_kwargs()))
    return stream(records, mask, format, svc.clock.now())


def _get_decision(svc: Service, decision_id: str) -> dict[str, Any]:
    try:
        row = svc.store.decisions.get(decision_id)
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    if row is None:
        raise Problem("unknown_decision", f"no decision {decision_id!r}")
    return row


@router.get(
    "/v1/decisions/{decision_id}",
    operation_id="getDecision",
    summary="One recorded decision",
    description="The log record: input snapshot, decision, trail, policy sha256, caller, "
    'hashes and `fx`; sensitive inputs and what is computed from them show "***".',
    response_model=DecisionRecord,
    responses={
        200: {
            "description": "The record",
            **ex.content(refer=ex.RECORD, masked=("Sensitive order amount", ex.MASKED_RECORD)),
        },
        **problems("GET", "/v1/decisions/{decision_id}"),
    },
)
def get_decision(
    decision_id: Annotated[str, DECISION_ID],
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/decisions/{decision_id}")],
    _known: Annotated[None, KNOWN_QUERY],
) -> JSONResponse:
    return JSONResponse(to_json(masker(svc)(_get_decision(svc, decision_id))))


@router.get(
    "/v1/decisions/{decision_id}/replay",
    operation_id="replayDecision",
    summary="Re-evaluate a recorded decision under the policy that made it",
    response_model=ReplayResult,
    responses={
        200: {"description": "Whether the replay is identical", **ex.content(same=ex.REPLAY)},
        **problems("GET", "/v1/decisions/{decision_id}/replay"),
    },
)
def replay_decision(
    decision_id: Annotated[str, DECISION_ID],
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/decisions/{decision_id}/replay")],
    _known: Annotated[None, KNOWN_QUERY],
) -> JSONResponse:
    row = _get_decision(svc, decision_id)
    stored = Decision.model_validate(row["decision"])
    replay_policy = svc.replayer.compiled(row.get("policy_sha256") or stored.policy.sha256)
    replayed = evaluate(replay_policy, row["request"])  # the stored, unmasked input
    # Differences are found on the real values; masked values are shown as "***".
    m = masking_of(svc)(row)
    diffs = as_shown(
        differences(
            mask_decision(stored.comparable(), m, Hidden),
            mask_decision(replayed.comparable(), m, Hidden),
        )
    )
    return JSONResponse(
        to_json(
            {
                "decision_id": decision_id,
                "identical": not diffs,
                "policy": stored.policy.model_dump(mode="json"),
                "stored_outcome": stored.outcome,
                "replayed_outcome": replayed.outcome,
                "differences": diffs,
            }
        )
    )


def order_conflict(exc: OrderConflict) -> Problem:
    """409 ``conflict`` at ``order_id``: the order id belongs to another customer, or the
    order can no longer be amended."""
    message = str(exc)
    return Problem(
        "conflict",
        message,
        errors=[{"path": "order_id", "code": "order_conflict", "message": message}],
    )
