"""RFC 9457 ``application/problem+json`` responses and the app's exception handlers.

Every error the HTTP API returns has the same shape::

    {"type": "https://creditgate.dev/problems/<code>", "title": "...", "status": 422,
     "detail": "...", "code": "<code>",
     "errors": [{"path": "amount", "code": "invalid_type", "message": "..."}]}

``code`` is stable (clients branch on it); ``title`` is the short human name of the code;
``detail`` explains this occurrence; ``errors`` lists every field problem (empty when the
problem is not about fields). At most ``MAX_ERRORS`` (100) errors are listed: beyond that
the body also carries ``errors_total`` and ``detail`` says how many more there are (a broken
100,000-line CSV import must not answer with a 100,000-entry list). ``ProblemDetails`` is
the pydantic model of the body, for the OpenAPI document. No stack trace or exception text
of an internal error ever reaches the client: it goes to the server log only.

Failing closed: a database or engine failure answers 503/500 and never a decision, so an
order is never approved because something broke.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.evaluate import EvaluationError
from engine.inputs import InputErrors

__all__ = [
    "CODES",
    "MAX_ERRORS",
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "Problem",
    "ProblemDetails",
    "ProblemError",
    "install_handlers",
    "problem_response",
    "validation_errors",
]

log = logging.getLogger("creditgate.api")

PROBLEM_BASE = "https://creditgate.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

#: stable code -> (HTTP status, title)
CODES: dict[str, tuple[int, str]] = {
    "invalid_request": (422, "The request is not valid"),
    "invalid_json": (422, "The request body is not valid JSON"),
    "bad_request": (400, "Bad request"),
    "unauthorized": (401, "An API key is required"),
    "forbidden": (403, "This API key's role may not do that"),
    "not_found": (404, "Not found"),
    "unknown_customer": (404, "Unknown customer"),
    "unknown_decision": (404, "Unknown decision"),
    "unknown_order": (404, "Unknown order"),
    "method_not_allowed": (405, "Method not allowed"),
    "conflict": (409, "The request conflicts with what is recorded"),
    "precondition_failed": (412, "A precondition (If-Match, If-None-Match) does not hold"),
    "request_too_large": (413, "The request body is too large"),
    "request_timeout": (408, "The request body arrived too slowly"),
    "unsupported_media_type": (415, "The request body's media type is not supported"),
    "client_closed_request": (499, "The client closed the connection before its request arrived"),
    "precondition_required": (428, "The request must be conditional (If-Match)"),
    "fx_rate_missing": (422, "No exchange rate for the order's currency and date"),
    "database_unavailable": (503, "The database is unavailable; no decision was made"),
    "not_ready": (503, "The service is not ready"),
    "audit_chain_broken": (503, "The audit hash chain is broken; no decision was made"),
    "no_decision": (500, "No decision was made"),
    "unreadable_record": (500, "A stored record cannot be read"),
    "policy_text_altered": (500, "The stored policy text was changed after it was recorded"),
    "internal_error": (500, "Internal error; no decision was made"),
}

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "not_ready",
}


_ERROR_FIELD_LIMIT = {"path": 200, "message": 500}


def _cut(value: Any, limit: int) -> Any:
    """``value`` if it is not text longer than ``limit``, else its start and ``...``."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 3] + "..."
    return value


def cut_path(path: str, limit: int = 200) -> str:
    """A request path for a log line or a message, at most ``limit`` characters."""
    return _cut(path, limit)


#: the most field errors a problem lists (the rest are counted in ``errors_total``)
MAX_ERRORS = 100

#: the title of a 401 for a key that was sent but is unknown, revoked or malformed
INVALID_KEY_TITLE = "The API key is not valid"


class ProblemError(BaseModel):
    """One field problem."""

    model_config = ConfigDict(extra="allow")

    path: str = Field(
        description="where: a dotted path into the body (`facts.customer.risk_class`, "
        "`items[2]`), `query.<name>`, or `line N.column` for a CSV import; empty for the "
        "whole body"
    )
    code: str = Field(description="stable code of this field problem (`invalid_type`, ...)")
    message: str = Field(description="what is wrong, for a person")
    line: int | None = Field(
        default=None, description="CSV import only: line number (1 = the header)"
    )
    column: str | None = Field(
        default=None, description="CSV import only: the column (empty for the whole row)"
    )


class ProblemDetails(BaseModel):
    """An RFC 9457 problem (application/problem+json): the body of every error."""

    type: str = Field(
        description="`https://creditgate.dev/problems/<code>`",
        examples=["https://creditgate.dev/problems/invalid_request"],
    )
    title: str = Field(description="short human name of the problem")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what happened in this occurrence")
    code: str = Field(description="stable code; clients branch on it", examples=["invalid_request"])
    errors: list[ProblemError] = Field(
        description=f"every field problem (empty when the problem is not about fields); at "
        f"most {MAX_ERRORS}"
    )
    errors_total: int | None = Field(
        default=None,
        description=f"sent only when there were more than {MAX_ERRORS} field problems: "
        "how many there were in all",
    )


class Problem(Exception):
    """Raise to answer with a problem: ``code`` (stable), ``detail``, field ``errors``
    (``[{path, code, message}]``, at most ``MAX_ERRORS`` kept: ``errors_total`` counts them
    all), optional ``status``/``title`` overrides and headers."""

    def __init__(
        self,
        code: str,
        detail: str = "",
        *,
        errors: Iterable[Mapping[str, str]] = (),
        status: int | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        default_status, default_title = CODES.get(code, (status or 500, code.replace("_", " ")))
        self.code = code
        self.status = status or default_status
        self.title = title or default_title
        self.detail = detail or self.title
        # paths and messages may quote what a caller sent (an unknown member's name):
        # bounded, so a megabyte name is never echoed back
        self.errors = [
            {k: _cut(v, _ERROR_FIELD_LIMIT.get(k, 200)) for k, v in dict(e).items()}
            for e in errors
        ]
        self.errors_total = len(self.errors)
        if self.errors_total > MAX_ERRORS:
            more = self.errors_total - MAX_ERRORS
            del self.errors[MAX_ERRORS:]
            self.detail += f" (the first {MAX_ERRORS} are listed, and {more} more)"
        self.headers = dict(headers or {})
        super().__init__(f"{self.status} {code}: {self.detail}")


def problem_body(p: Problem) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + p.code,
        "title": p.title,
        "status": p.status,
        "detail": p.detail,
        "code": p.code,
        "errors": p.errors,
        **({"errors_total": p.errors_total} if p.errors_total > len(p.errors) else {}),
    }


def problem_response(p: Problem) -> JSONResponse:
    """The ``application/problem+json`` response for ``p``."""
    return JSONResponse(
        problem_body(p), status_code=p.status, headers=p.headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_PYDANTIC_CODES = {
    "missing": "missing",
    "extra_forbidden": "unknown_field",
    "int_type": "invalid_type",
    "int_parsing": "invalid_type",
    "int_from_float": "invalid_type",
    "string_type": "invalid_type",
    "dict_type": "invalid_type",
    "model_type": "invalid_type",
    "model_attributes_type": "invalid_type",
    "bool_type": "invalid_type",
    "decimal_type": "invalid_type",
    "decimal_parsing": "invalid_type",
    "datetime_type": "invalid_type",
    "datetime_parsing": "invalid_value",
    "datetime_from_date_parsing": "invalid_value",
    "literal_error": "invalid_value",
    "enum": "invalid_value",
    "string_too_short": "too_short",
    "string_too_long": "too_long",
    "string_pattern_mismatch": "invalid_value",
    "greater_than": "below_min",
    "greater_than_equal": "below_min",
    "less_than": "above_max",
    "less_than_equal": "above_max",
}


def validation_errors(
    errors: Iterable[Mapping[str, Any]], *, strip: tuple[str, ...] = ("body",)
) -> list[dict[str, str]]:
    """pydantic / FastAPI validation errors as ``[{path, code, message}]``: dotted paths
    (``facts.customer.risk_class``, ``items[2]``), stable codes (custom validators raise
    ``PydanticCustomError`` with the code as its type), messages naming the field."""
    out = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if loc and loc[0] in strip:
            loc = loc[1:]
        kind = str(e.get("type", "invalid_value"))
        code = _PYDANTIC_CODES.get(kind, kind)
        msg = str(e.get("msg", "invalid value"))
        path = _path(loc)
        if kind != "missing" and "input" in e and e["input"] is None:
            # An explicit null is never "left out": optional fields take their default only
            # when absent (as in engine requests).
            code = "null_value"
            msg = "explicit null is not allowed: leave the field out for its default"
        elif kind == "extra_forbidden":
            msg = f"unknown field {_cut(repr(str(loc[-1])), 80)}" if loc else "unknown field"
        elif kind == "missing":
            msg = "required field is missing"
        out.append({"path": path, "code": code, "message": msg})
    return out


def input_errors(exc: InputErrors, path_map: Any = None) -> list[dict[str, str]]:
    """Engine ``InputErrors`` as problem errors; ``path_map`` maps an engine path
    (``order.amount``) to the request body's path (``amount``)."""
    out = []
    for e in exc.errors:
        path = path_map(e.path) if path_map and e.path else e.path
        out.append({"path": path, "code": e.code, "message": e.message})
    return out


def install_handlers(app: FastAPI, *, path_map: Any = None) -> None:
    """Register the exception handlers that turn every error into a problem response."""
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from api.core.chainhead import ChainBroken
    from api.core.database import StoreUnavailable

    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    async def on_request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = validation_errors(exc.errors(), strip=())
        return problem_response(
            Problem(
                "invalid_request",
                f"{len(errs)} problem{'s' if len(errs) != 1 else ''} with the request",
                errors=errs,
            )
        )

    async def on_input_errors(request: Request, exc: InputErrors) -> JSONResponse:
        errs = input_errors(exc, path_map)
        json_error = any(e["code"] == "invalid_json" for e in errs)
        n = len(errs)
        return problem_response(
            Problem(
                "invalid_json" if json_error else "invalid_request",
                "the request body is not valid JSON"
                if json_error
                else f"the request does not fit the credit policy ({n} problem"
                f"{'s' if n != 1 else ''}); no decision was made",
                errors=errs,
            )
        )

    async def on_db_unavailable(request: Request, exc: Exception) -> JSONResponse:
        busy = busy_reason(exc)
        cause = getattr(exc, "cause", "") or type(getattr(exc, "orig", None) or exc).__name__
        log.error(
            "database %s: %s",
            "busy" if busy else "unavailable",
            cause,
            extra={"path": request.url.path, "error": cause},
        )
        what = (
            f"the database is busy ({busy})"
            if busy
            else "the database could not be reached or did not answer"
        )
        return problem_response(
            Problem(
                "database_unavailable",
                f"{what}; nothing was recorded and no decision was made: treat the order as "
                "not approved and retry later",
                headers={"Retry-After": "5"},
            )
        )

    async def on_chain_broken(request: Request, exc: Exception) -> JSONResponse:
        log.critical(
            "audit chain broken: %s", exc, extra={"path": request.url.path, "error": str(exc)}
        )
        return problem_response(
            Problem(
                "audit_chain_broken",
                "the hash chain of the audit log is broken (records were removed or edited), "
                "so nothing more can be recorded and no decision was made; an operator must "
                "run 'creditgate audit verify' and restore the database",
            )
        )

    async def on_evaluation_error(request: Request, exc: EvaluationError) -> JSONResponse:
        log.error("no decision: %s", exc.code, extra={"path": request.url.path, "error": exc.code})
        status = 503 if exc.code == "engine" else 500
        return problem_response(
            Problem(
                "no_decision",
                f"no decision was made ({exc.code}): treat the order as not approved "
                "(refer it to a person or retry)",
                status=status,
            )
        )

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, Problem):  # pragma: no cover - defensive
            return problem_response(exc.detail)
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else ""
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {cut_path(request.url.path)}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # The router names the methods of the first route whose path matched; Allow
            # lists every method the path accepts (RFC 9110 15.5.6).
            from api.core.routing import allowed_methods, app_path

            allow = allowed_methods(request.app, app_path(request.scope))
            headers["Allow"] = ", ".join(allow)
            if detail in ("", "Method Not Allowed"):
                accepts = ", ".join(allow) or "no method"
                method, path = request.method[:20], request.url.path
                detail = f"{method} is not allowed on {path}; it accepts {accepts}"
        return problem_response(Problem(code, detail, status=exc.status_code, headers=headers))

    app.add_exception_handler(Problem, on_problem)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(InputErrors, on_input_errors)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailable, on_db_unavailable)
    app.add_exception_handler(ChainBroken, on_chain_broken)
    for db_error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(db_error, on_db_unavailable)
    app.add_exception_handler(EvaluationError, on_evaluation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]


#: PostgreSQL SQLSTATEs of a write that waited on another one: deadlock_detected,
#: lock_not_available (``lock_timeout``)
BUSY_SQLSTATES = {
    "40P01": "a deadlock with another write",
    "55P03": "a lock timeout: another write held a lock it needed",
}


def busy_reason(exc: BaseException) -> str:
    """Why the database was busy, if ``exc`` (or the error it was raised from) is a lock
    wait that ran out rather than a database that is down: the SQLite writer lock of this
    process not granted within ``api.core.database.WRITER_LOCK_TIMEOUT`` s (``WriterLockTimeout``),
    SQLite's ``database is locked`` (another process held the write lock past its busy
    timeout), a PostgreSQL deadlock (40P01) or lock timeout (55P03). ``""`` otherwise."""
    from api.core.database import WRITER_LOCK_TIMEOUT

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if getattr(e, "cause", None) == "WriterLockTimeout":
            return f"another write held it longer than {WRITER_LOCK_TIMEOUT:g} s"
        sqlstate = getattr(e, "sqlstate", None)
        if sqlstate in BUSY_SQLSTATES:
            return BUSY_SQLSTATES[sqlstate]
        by_name = {"DeadlockDetected": "40P01", "LockNotAvailable": "55P03"}
        if getattr(e, "cause", None) in by_name:  # StoreUnavailable names the driver's error
            return BUSY_SQLSTATES[by_name[e.cause]]  # type: ignore[attr-defined]
        if "database is locked" in str(e):
            return "another process held its write lock too long"
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return ""


def internal_error_response() -> JSONResponse:
    """The 500 problem for an unexpected exception (the details go to the log only)."""
    return problem_response(
        Problem(
            "internal_error",
            "an internal error occurred; nothing was decided or recorded by this request "
            "(treat the order as not approved)",
        )
    )


def unreadable_problem(exc: Exception) -> Problem:
    """500 ``unreadable_record``: a stored record (named by its seq) cannot be read; never
    skipped silently."""
    log.error("unreadable record: %s", exc, extra={"error": str(exc)})
    return Problem(
        "unreadable_record",
        f"{exc}; the record was edited outside the service: run 'creditgate audit verify' "
        "and restore the database",
    )
