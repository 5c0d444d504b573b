"""Request bodies of the HTTP API, the shared part: JSON read raw (size-limited), parsed
exactly (``Decimal``, duplicate keys refused) and validated by pydantic models whose value
parsers refuse floats for money; the field types every domain's models use (``Money``,
``Identifier``, ``CustomerId``, ``Currency``, ``IsoDate``, ``Whole``); and the checks that
need the policy (decimals, money facts). Each domain's request models are in its
``models.py``.

Money is a JSON string such as ``"12500.00"`` or a whole JSON number, below 10^15; a JSON
number with a fraction is refused (``inexact_number``): most JSON encoders make it a binary
float before it is sent."""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from api.core import schemas
from api.core.problems import MAX_ERRORS, Problem, validation_errors

NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$", re.ASCII)
MAX_MONEY = Decimal(10) ** 15
_IDENT = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,200}$")


def parse_money(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise PydanticCustomError(
            "invalid_type", 'expected money as a string such as "12500.00", got a boolean'
        )
    if isinstance(value, float | Decimal):
        raise PydanticCustomError(
            "inexact_number",
            'money must be a JSON string such as "12500.00" (or a whole number): a JSON '
            "number with a fraction is a binary float to most JSON encoders",
        )
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str) and len(value) <= 40 and NUMBER.fullmatch(value):
        amount = Decimal(value)
    else:
        raise PydanticCustomError(
            "invalid_type",
            'expected money as a string of digits such as "12500.00" (no exponent, no spaces)',
        )
    if abs(amount) >= MAX_MONEY:
        raise PydanticCustomError(
            "out_of_range", "amount is beyond the supported range (below 10^15)"
        )
    return amount + 0


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("invalid_type", "expected a whole number (JSON integer)")
    if abs(value) >= 10**9:
        raise PydanticCustomError("out_of_range", "number is beyond the supported range")
    return value


def parse_identifier(value: Any) -> str:
    """An order, event or customer id: 1 to 200 printable characters (no control
    characters), not beginning or ending with whitespace."""
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_type", "expected text")
    if not _IDENT.fullmatch(value):
        raise PydanticCustomError(
            "invalid_value", "an identifier is text of 1 to 200 printable characters"
        )
    if value != value.strip():
        raise PydanticCustomError(
            "invalid_value",
            "an identifier may not begin or end with spaces: {value}",
            {"value": repr(value[:60])},
        )
    return value


# A customer id is a URL path segment (/v1/customers/{id}): none of these, and not . or ..
URL_UNSAFE = "/?#%\\"


def parse_customer_id(value: Any) -> str:
    """A customer id: an identifier (``parse_identifier``) usable as one URL path segment
    as it is: no ``/ ? # % \\``, not ``.`` or ``..``."""
    cid = parse_identifier(value)
    bad = "".join(sorted({c for c in cid if c in URL_UNSAFE}))
    if bad or cid in (".", ".."):
        raise PydanticCustomError(
            "invalid_value",
            "a customer id is one URL path segment (/v1/customers/<id>): it may not "
            "contain / ? # % or \\ nor be . or ..; got {value}",
            {"value": repr(cid[:60])},
        )
    return cid


_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", re.ASCII)


def parse_date(value: Any) -> date:
    """A calendar date as an ISO 8601 string ``YYYY-MM-DD`` only: no number (a Unix
    timestamp to pydantic), no ``20261129``, no time, no ``null`` (leave the field out)."""
    if value is None:
        raise PydanticCustomError(
            "null_value", "explicit null is not allowed: leave the field out for its default"
        )
    if not isinstance(value, str):
        raise PydanticCustomError(
            "invalid_type", 'expected a date as a string "YYYY-MM-DD" such as "2026-11-29"'
        )
    if not _ISO_DATE.fullmatch(value):
        raise PydanticCustomError(
            "invalid_value",
            "{value} is not a date written YYYY-MM-DD (ISO 8601) such as 2026-11-29",
            {"value": repr(value[:40])},
        )
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "invalid_value", "{value} is not a calendar date", {"value": value}
        ) from None


def parse_currency(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_type", "expected an ISO 4217 currency code")
    if value not in schemas.CURRENCY_CODES:
        raise PydanticCustomError(
            "unknown_currency", "'{value}' is not an ISO 4217 currency code", {"value": value}
        )
    return value


# Each type's JSON schema (api.core.schemas) describes exactly what its parser accepts.
Money = Annotated[Decimal, BeforeValidator(parse_money), WithJsonSchema(schemas.MONEY_SCHEMA)]
Whole = Annotated[int, BeforeValidator(_whole), WithJsonSchema(schemas.WHOLE_SCHEMA)]
Identifier = Annotated[
    str, BeforeValidator(parse_identifier), WithJsonSchema(schemas.IDENTIFIER_SCHEMA)
]
CustomerId = Annotated[
    str, BeforeValidator(parse_customer_id), WithJsonSchema(schemas.CUSTOMER_ID_SCHEMA)
]
Currency = Annotated[str, BeforeValidator(parse_currency), WithJsonSchema(schemas.CURRENCY_SCHEMA)]
IsoDate = Annotated[date, BeforeValidator(parse_date), WithJsonSchema(schemas.DATE_SCHEMA)]


class Body(BaseModel):
    """Base of every request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


def require_json(request: Request, media_types: tuple[str, ...] = ("application/json",)) -> None:
    """Refuse (415 ``unsupported_media_type``) a body not sent as one of ``media_types``
    (default ``application/json``; a ``charset`` parameter, if any, must be UTF-8): a form
    or text body is never read as JSON by accident. Other JSON media types
    (``application/*+json``) are refused too, unless the route names them (``PATCH``:
    ``application/merge-patch+json``)."""
    raw = request.headers.get("content-type")
    media, *params = (raw or "").split(";")
    ok = media.strip().lower() in media_types
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            ok = False
    if not ok:
        sent = f"'{raw[:80]}'" if raw else "no Content-Type"
        names = " or ".join(f"'Content-Type: {m}'" for m in media_types)
        raise Problem(
            "unsupported_media_type",
            f"send the body as JSON with {names} (UTF-8); got {sent}",
            status=415,
        )


#: a body larger than this is received one at a time per worker (``_large_bodies``)
LARGE_BODY = 64 * 1024
#: ... and must arrive within this many seconds per MiB (at least this many) once it
#: holds the gate, else 408: a sender trickling bytes cannot keep the gate
LARGE_BODY_SECONDS = 10.0
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _large_bodies() -> asyncio.Semaphore:
    """The event loop's gate for large bodies: one is received at a time, so callers that
    send megabytes (junk, or a large import) queue among themselves while the usual
    small requests go by (a semaphore per loop: an asyncio primitive is bound to one)."""
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(1)
    return gate


async def read_body(request: Request, limit: int) -> bytes:
    """The raw request body, refusing more than ``limit`` bytes (413) before any parsing.
    Beyond ``LARGE_BODY`` bytes (declared, or received so far) the rest is received under
    the loop's large-body gate (``_large_bodies``).

    A client that closes the connection before its whole body arrived (``ClientDisconnect``)
    is its own doing, not a server error: one warning line (no traceback) and a 499
    ``client_closed_request`` problem, which the client never sees but which the request
    log and the metrics count as a client error, never a 500."""
    import logging

    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    size_declared = 0
    if declared is not None:
        try:
            size_declared = int(declared)
        except ValueError:
            raise Problem("invalid_request", "Content-Length is not a number", status=400) from None
        if size_declared > limit:
            raise Problem(
                "request_too_large",
                f"the body is {size_declared} bytes; at most {limit} are accepted",
            )
    chunks: list[bytes] = []
    size = 0
    async with contextlib.AsyncExitStack() as stack:
        gated = False
        try:
            if declared is not None and size_declared > LARGE_BODY:
                await stack.enter_async_context(_large_bodies())
                gated = True
            allowed = LARGE_BODY_SECONDS * max(1.0, (size_declared or limit) / 2**20)
            deadline = asyncio.get_running_loop().time() + allowed
            async with asyncio.timeout_at(deadline if gated else None) as receiving:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise Problem("request_too_large", f"the body is over {limit} bytes")
                    chunks.append(chunk)
                    if size > LARGE_BODY and not gated:  # a large body sent without a length
                        await stack.enter_async_context(_large_bodies())
                        gated = True
                        receiving.reschedule(asyncio.get_running_loop().time() + allowed)
        except TimeoutError:
            raise Problem(
                "request_timeout",
                f"the body did not arrive within {allowed:g} s "
                f"({size} bytes received); nothing was done",
                status=408,
                title="The request body arrived too slowly",
            ) from None
        except ClientDisconnect:
            logging.getLogger("creditgate.api").warning(
                "client closed the connection during the upload",
                extra={
                    "request_id": getattr(request.state, "request_id", None),
                    "method": request.method,
                    "path": request.url.path,
                    "received_bytes": size,
                    "declared_bytes": declared,
                },
            )
            raise Problem(
                "client_closed_request",
                f"the client closed the connection after {size} bytes of the body; "
                "nothing was done",
            ) from None
    return b"".join(chunks)


def parse_body(data: bytes) -> Any:
    from engine.inputs import InputError, InputErrors, parse_request_json

    if not data.strip():
        raise InputErrors([InputError("", "invalid_json", "request: the body is empty")])
    return parse_request_json(data, "request")


def validate_errors(model: type[BaseModel], data: dict[str, Any]) -> list[dict[str, str]]:
    """Every problem of ``data`` as ``model`` (``[{path, code, message}]``; none: valid)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return validation_errors(exc.errors())
    return []


def validate_body(model: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        raise Problem(
            "invalid_request",
            "the body must be a JSON object",
            errors=[{"path": "", "code": "invalid_type", "message": "expected a JSON object"}],
        )
    allowed = len(model.model_fields)
    if len(data) > allowed + MAX_ERRORS and model.model_config.get("extra") == "forbid":
        # Thousands of unknown members would be thousands of errors to make and drop
        # (pydantic reports each): one error says it, in microseconds.
        raise Problem(
            "invalid_request",
            f"the body has {len(data):,} members; {model.__name__} has {allowed} fields",
            errors=[{"path": "", "code": "too_many",
                     "message": f"{len(data):,} members, at most {allowed} fields are known"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc.errors())
        n = len(errors)
        raise Problem(
            "invalid_request",
            f"{n} problem{'s' if n != 1 else ''} with the request body; nothing was done",
            errors=errors,
        ) from None


def _walk(facts: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(facts, dict):
        for key, value in facts.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.extend(_walk(value, path))
            else:
                out.append((path, value))
    return out


def money_facts(policy: Any, facts: dict[str, Any], where: str) -> list[dict[str, str]]:
    """Refuse fractional JSON numbers for money inputs given as facts (same rule as the
    body's money fields)."""
    errors = []
    for path, value in _walk(facts):
        spec = None
        for candidate in (path, f"customer.{path}", f"order.{path}"):
            spec = policy.inputs.get(candidate)
            if spec is not None:
                break
        if spec is not None and spec.type.kind == "money" and isinstance(value, float | Decimal):
            errors.append(
                {
                    "path": f"{where}.{path}",
                    "code": "inexact_number",
                    "message": 'money must be a JSON string such as "12500.00" (or a whole '
                    "number): a JSON number with a fraction is a binary float to most JSON "
                    "encoders",
                }
            )
    return errors


def decimals_check(policy: Any, currency: str | None = None, **amounts: Decimal) -> None:
    """Refuse (422 ``too_many_decimals``) an amount with more decimals than the minor unit
    of ``currency`` (ISO 4217 via Babel: EUR/USD 2, JPY 0, KWD 3); default: the policy
    currency. An order in another currency is checked against ITS currency, before it is
    converted."""
    from babel.numbers import get_currency_precision

    code = currency or policy.currency
    units = policy.minor_units if code == policy.currency else get_currency_precision(code)
    errors = []
    for path, amount in amounts.items():
        if amount != round(amount, units):
            errors.append(
                {
                    "path": path,
                    "code": "too_many_decimals",
                    "message": f"{amount} has more than {units} decimal"
                    f"{'s' if units != 1 else ''} ({code})",
                }
            )
    if errors:
        raise Problem("invalid_request", "amounts with too many decimals", errors=errors)


def to_json(obj: Any) -> Any:
    """Store rows as JSON data: money (``Decimal``) and datetimes as strings, never floats."""
    from api.core.chain import jsonable

    return jsonable(obj)


_STORE_FIELDS = (
    "order_id", "customer_id", "amount", "currency", "payment_term_days", "facts",
    "open_receivables",
)  # fmt: skip


def store_refusal(exc: ValueError) -> Problem:
    """A ``ValueError`` of the store (the order or customer does not fit the ledger) as a
    422 problem (the decisions route answers ``OrderConflict`` with a 409 first)."""
    message = str(exc)
    head = message.split(":", 1)[0].strip()
    path = head if head in _STORE_FIELDS or head.startswith("facts") else ""
    if path == "" and "currency" in message:
        path = "currency"
    return Problem(
        "invalid_request",
        f"{message}; nothing was done",
        errors=[{"path": path, "code": "not_accepted", "message": message}],
    )


async def json_body(request: Request, model: type[BaseModel], limit: int) -> Any:
    """The request's JSON body as ``model``: media type checked (415), at most ``limit``
    bytes read (413), parsed exactly (``parse_body``) and validated (422, every problem)."""
    require_json(request)
    return validate_body(model, parse_body(await read_body(request, limit)))


#: request body schemas of the OpenAPI document, by component name (``json_body_doc``)
REQUEST_BODIES: dict[str, Any] = {}


def json_body_doc(
    model: Any,
    examples: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    schema: Any = None,
) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with ``json_body`` (the body is
    read raw, so FastAPI cannot document it by itself): a ``$ref`` to the component
    ``name`` (default: the model's name), whose schema ``api.core.docs.install_openapi``
    adds to the document: ``model``'s, or ``schema``'s (a model or ``TypeAdapter`` that
    describes the same body more precisely, e.g. a discriminated union by type).
    ``examples``: named example bodies (``{"name": {"summary", "value"}}``)."""
    name = name or model.__name__
    REQUEST_BODIES[name] = schema if schema is not None else model
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{name}"}}
    if examples:
        media["examples"] = examples
    return {"requestBody": {"required": True, "content": {"application/json": media}}}
