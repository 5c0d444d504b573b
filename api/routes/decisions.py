"""Decisions: decide an order (``POST /v1/decisions``), read, list, export and replay the
decision log."""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from api.auth import Caller
from api.bodies import (
    DecisionRequest,
    currency_check,
    decimals_check,
    json_body,
    json_body_doc,
    money_facts,
    store_refusal,
    to_json,
)
from api.csvio import EXPORT_COLUMNS, csv_cell
from api.masking import Hidden, Masking, as_shown, mask_decision, mask_record, masking_for
from api.problems import Problem
from api.routes import caller, problems
from api.service import Service, service
from engine.decision import Decision
from engine.evaluate import evaluate
from engine.inputs import InputErrors

log = logging.getLogger("creditgate.api")
router = APIRouter(tags=["decisions"])
Svc = Annotated[Service, Depends(service)]


def parse_when(value: str | None, name: str) -> date | datetime | None:
    """``from`` / ``to`` query values: a date (``2026-11-29``, the whole day) or an ISO 8601
    date-time (``2026-11-29T10:00:00Z``; without an offset it is UTC). Raises
    ``PydanticCustomError`` (``invalid_value``; ``out_of_range`` for a date-time whose UTC
    time lies outside years 1..9999, e.g. ``0001-01-01T00:00:00+05:00``), so FastAPI reports
    it together with every other bad query parameter in one 422 (path ``query.<name>``)."""
    if value is None:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            when: date | datetime = date.fromisoformat(value)
        else:
            when = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "invalid_value",
            "expected a date (2026-11-29) or an ISO 8601 date-time (2026-11-29T10:00:00Z)",
        ) from None
    from api.store import query_bound

    try:
        query_bound(when, end=name == "to")
    except OverflowError:
        raise PydanticCustomError(
            "out_of_range",
            f"{value} is outside the supported range (UTC 0001-01-01 to 9999-12-31)",
        ) from None
    return when


def when_from(value: str | None) -> date | datetime | None:
    return parse_when(value, "from")


def when_to(value: str | None) -> date | datetime | None:
    return parse_when(value, "to")


@router.post(
    "/v1/decisions",
    summary="Decide one order (approve / refer / decline) and record it",
    responses=problems("POST", "/v1/decisions"),
    openapi_extra=json_body_doc(DecisionRequest),
)
async def post_decision(
    request: Request,
    svc: Svc,
    who: Annotated[Caller, caller("POST", "/v1/decisions")],
) -> JSONResponse:
    from api.store import FxRateMissing

    policy, store = svc.policy, svc.store
    req = await json_body(request, DecisionRequest, svc.max_bytes)
    today = service_today(svc)
    if req.order_date is not None:
        order_date_check(req.order_date, today, _setting(svc, "max_order_age_days"))
    if req.currency != policy.currency and not await run_in_threadpool(
        store.has_fx_rates, policy.currency, req.currency
    ):
        currency_check(policy, req.currency)  # no rate of this currency at all
    decimals_check(policy, req.currency, amount=req.amount)  # the ORDER currency's unit
    errors = money_facts(policy, req.facts, "facts")
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
    start = time.perf_counter()
    try:
        decision, kind = await run_in_threadpool(
            partial(
                store.decide,
                order,
                svc.evaluate,
                who.name,
                decision_currency=policy.currency,
                minor_units=policy.minor_units,
                today=today,
                max_rate_age_days=_setting(svc, "max_rate_age_days"),
            )
        )
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
    except ValueError as exc:
        raise store_refusal(exc) from None
    svc.metrics.decision_seconds.observe(time.perf_counter() - start)
    svc.metrics.decisions.labels(decision.outcome, kind).inc()
    request.state.decision_id = decision.decision_id
    log.info(
        "decision",
        extra={
            "request_id": request.state.request_id,
            "decision_id": decision.decision_id,
            "order_id": req.order_id,
            "customer_id": req.customer_id,
            "outcome": decision.outcome,
            "kind": kind,
            "policy_version": decision.policy.version,
            "caller": who.name,
        },
    )
    answer = {**decision.model_dump(mode="json"), "kind": kind}
    if req.currency != policy.currency:
        # The conversion (original amount, rate, its date, rounding) as recorded in the log
        # row's fx: the order-entry caller sees which rate was used.
        row = await run_in_threadpool(store.get_decision, decision.decision_id)
        answer["fx"] = to_json((row or {}).get("fx"))
    return JSONResponse(answer)


def _setting(svc: Service, name: str) -> int:
    from api.settings import Settings

    value = getattr(svc.settings, name, None)
    return int(Settings.model_fields[name].default if value is None else value)


def service_today(svc: Service) -> date:
    """Today's date in UTC by the service's clock (``svc.clock``, tests) or the system's."""
    now = svc.clock() if svc.clock else datetime.now(UTC)
    return (now.astimezone(UTC) if now.tzinfo else now).date()


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


def single_query(*names: str) -> Any:
    """A dependency refusing a query parameter of ``names`` sent more than once
    (``format=csv&format=jsonl``): 422 ``invalid_request``, each at ``query.<name>`` with
    code ``duplicate_parameter``, never the last one silently taken."""

    def check(request: Request) -> None:
        errors = [
            {
                "path": f"query.{name}",
                "code": "duplicate_parameter",
                "message": f"{name!r} is given {n} times ({', '.join(map(repr, values))}); "
                "give it once",
            }
            for name in names
            if (n := len(values := request.query_params.getlist(name))) > 1
        ]
        if errors:
            n = len(errors)
            raise Problem(
                "invalid_request",
                f"{n} query parameter{'s' if n != 1 else ''} given more than once",
                errors=errors,
            )

    return Depends(check)


LIST_PARAMS = (
    "customer_id",
    "outcome",
    "from",
    "to",
    "rule_id",
    "policy_version",
    "cursor",
    "limit",
)
EXPORT_PARAMS = ("format", "customer_id", "from", "to")


@router.get(
    "/v1/decisions",
    summary="List decisions (newest first)",
    responses=problems("GET", "/v1/decisions"),
)
def list_decisions(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/decisions")],
    _once: Annotated[None, single_query(*LIST_PARAMS)],
    customer_id: str | None = None,
    outcome: Literal["approve", "refer", "decline"] | None = None,
    date_from: Annotated[
        str | None,
        Query(alias="from", description="From this date or date-time (inclusive)"),
        AfterValidator(when_from),
    ] = None,
    date_to: Annotated[
        str | None,
        Query(alias="to", description="Up to this date (whole day) or date-time (exclusive)"),
        AfterValidator(when_to),
    ] = None,
    rule_id: Annotated[str | None, Query(max_length=200)] = None,
    policy_version: Annotated[
        str | None, Query(max_length=200, description="Policy version or sha256")
    ] = None,
    cursor: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="next_cursor of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    from api.store import UnreadableRecord

    mask = masker(svc)
    try:
        rows, next_cursor = svc.store.list_decisions(
            customer_id=customer_id,
            outcome=outcome,
            date_from=date_from,  # parsed and range-checked by when_from / when_to
            date_to=date_to,
            rule_id=rule_id,
            policy_version=policy_version,
            cursor=cursor,
            limit=limit,
        )
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    items = [mask(row) for row in rows]
    return JSONResponse(to_json({"items": items, "next_cursor": next_cursor}))


def unreadable_problem(exc: Exception) -> Problem:
    """500 ``unreadable_record``: a stored record (named by its seq) cannot be read; never
    skipped silently."""
    log.error("unreadable record: %s", exc, extra={"error": str(exc)})
    return Problem(
        "unreadable_record",
        f"{exc}; the record was edited outside the service: run 'creditgate audit verify' "
        "and restore the database",
    )


def masking_of(svc: Service) -> Callable[[dict[str, Any]], Masking]:
    """The ``Masking`` of a log record: the inputs marked sensitive by the policy in force or
    by the policy version that made the record, and everything computed from them."""
    current = masking_for(svc.policy)
    by_sha: dict[str, Masking] = {svc.policy.sha256: current}

    def of(row: dict[str, Any]) -> Masking:
        sha = row.get("policy_sha256") or ""
        if sha not in by_sha:
            try:
                by_sha[sha] = current | masking_for(svc.replayer.compiled(sha).policy)
            except Problem:  # source not stored: the current policy's marks
                by_sha[sha] = current
        return by_sha[sha]

    return of


def masker(svc: Service) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Masks a log record for reading (one, list, export): see ``api.masking``."""
    of = masking_of(svc)
    return lambda row: mask_record(row, of(row))


@router.get(
    "/v1/decisions/export",
    summary="Export the decision log (CSV or JSON lines), sensitive inputs masked",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}}},
        **problems("GET", "/v1/decisions/export"),
    },
)
def export_decisions(
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/decisions/export")],
    _once: Annotated[None, single_query(*EXPORT_PARAMS)],
    format: Literal["csv", "jsonl"] = "jsonl",  # noqa: A002 - the query name
    customer_id: Annotated[str | None, Query(max_length=200)] = None,
    date_from: Annotated[
        str | None,
        Query(alias="from", description="From this date or date-time"),
        AfterValidator(when_from),
    ] = None,
    date_to: Annotated[
        str | None,
        Query(alias="to", description="Up to this date (whole day) or date-time"),
        AfterValidator(when_to),
    ] = None,
) -> Response:
    from api.store import UnreadableRecord

    start, end = date_from, date_to  # parsed and range-checked by when_from / when_to
    mask = masker(svc)
    rows = svc.store.iter_decisions(customer_id=customer_id, date_from=start, date_to=end)
    try:
        # The first batch is read before the answer starts: an unreadable record in it is
        # a problem response, not a 200 with a short body.
        first = next(rows, None)
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    records = itertools.chain([] if first is None else [first], rows)
    written = 0

    def counted() -> Any:
        nonlocal written
        for row in records:
            yield row
            written += 1

    def failed(exc: Exception) -> str:
        log.error("export aborted after %d records: %s", written, exc, extra={"error": str(exc)})
        if isinstance(exc, UnreadableRecord):
            return str(exc)
        return f"internal error ({type(exc).__name__})"

    def jsonl() -> Any:
        try:
            for row in counted():
                yield json.dumps(to_json(mask(row)), ensure_ascii=False) + "\n"
        except Exception as exc:
            # Mid-stream: the status line is gone. Say so in the body, then abort the
            # connection (re-raise) so a client sees a broken transfer as well.
            end = {"complete": False, "records": written, "error": failed(exc)}
            yield json.dumps(end, ensure_ascii=False) + "\n"
            raise
        yield json.dumps({"complete": True, "records": written}) + "\n"

    def csv_lines() -> Any:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        try:
            for row in counted():
                yield from csv_row(writer, buf, row)
        except Exception as exc:
            writer.writerow(["#incomplete", written, csv_cell(failed(exc))])
            yield buf.getvalue()
            raise
        writer.writerow(["#complete", written])
        yield buf.getvalue()

    def csv_row(writer: Any, buf: io.StringIO, row: dict[str, Any]) -> Any:
        data = to_json(mask(row))
        writer.writerow(
            [
                csv_cell(
                    json.dumps(data[c], ensure_ascii=False, sort_keys=True)
                    if isinstance(data.get(c), dict)
                    else ("" if data.get(c) is None else data[c])
                )
                for c in EXPORT_COLUMNS
            ]
        )
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        csv_lines() if format == "csv" else jsonl(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="decisions-{stamp}.{format}"'},
    )


def _get_decision(svc: Service, decision_id: str) -> dict[str, Any]:
    from api.store import UnreadableRecord

    try:
        row = svc.store.get_decision(decision_id)
    except UnreadableRecord as exc:
        raise unreadable_problem(exc) from None
    if row is None:
        raise Problem("unknown_decision", f"no decision {decision_id!r}")
    return row


@router.get(
    "/v1/decisions/{decision_id}",
    summary="One recorded decision",
    responses=problems("GET", "/v1/decisions/{decision_id}"),
)
def get_decision(
    decision_id: Annotated[str, Path(max_length=200)],
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/decisions/{decision_id}")],
) -> JSONResponse:
    return JSONResponse(to_json(masker(svc)(_get_decision(svc, decision_id))))


@router.get(
    "/v1/decisions/{decision_id}/replay",
    summary="Re-evaluate a recorded decision under the policy that made it",
    responses=problems("GET", "/v1/decisions/{decision_id}/replay"),
)
def replay_decision(
    decision_id: Annotated[str, Path(max_length=200)],
    svc: Svc,
    _: Annotated[Caller, caller("GET", "/v1/decisions/{decision_id}/replay")],
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


def differences(stored: Any, replayed: Any, path: str = "") -> list[dict[str, Any]]:
    """Every leaf where two JSON values differ: ``[{path, stored, replayed}]``."""
    if isinstance(stored, dict) and isinstance(replayed, dict):
        out = []
        for key in sorted(set(stored) | set(replayed), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in stored:
                out.append({"path": sub, "stored": None, "replayed": replayed[key]})
            elif key not in replayed:
                out.append({"path": sub, "stored": stored[key], "replayed": None})
            else:
                out.extend(differences(stored[key], replayed[key], sub))
        return out
    if isinstance(stored, list) and isinstance(replayed, list) and len(stored) == len(replayed):
        out = []
        for i, (a, b) in enumerate(zip(stored, replayed, strict=True)):
            out.extend(differences(a, b, f"{path}[{i}]"))
        return out
    if stored != replayed:
        return [{"path": path, "stored": stored, "replayed": replayed}]
    return []
