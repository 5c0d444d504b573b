"""Request bodies of the HTTP API: JSON read raw (size-limited), parsed exactly
(``Decimal``, duplicate keys refused), validated by pydantic models whose value parsers
refuse floats for money, plus the checks that need the policy (currency, decimals).

Money is a JSON string such as ``"12500.00"`` or a whole JSON number, below 10^15; a JSON
number with a fraction is refused (``inexact_number``): most JSON encoders make it a binary
float before it is sent."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from api.problems import Problem, validation_errors

_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$", re.ASCII)
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
    elif isinstance(value, str) and len(value) <= 40 and _NUMBER.fullmatch(value):
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
    from babel.numbers import list_currencies

    if not isinstance(value, str):
        raise PydanticCustomError("invalid_type", "expected an ISO 4217 currency code")
    if value not in list_currencies():
        raise PydanticCustomError(
            "unknown_currency", "'{value}' is not an ISO 4217 currency code", {"value": value}
        )
    return value


_RESERVED_FACTS = {
    "order.id": "order_id",
    "order.amount": "amount",
    "order.currency": "currency",
    "order.payment_term_days": "payment_term_days",
    "customer.id": "customer_id",
}
_FACT_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_CUSTOMER_FACT = re.compile(r"^(customer\.)?[a-z][a-z0-9_]*$")


def _fact_value(key: str, value: Any) -> None:
    if isinstance(value, dict | list):
        raise PydanticCustomError(
            "invalid_type",
            "facts.{key}: a fact is a single value (text, number or true/false)",
            {"key": key},
        )


def _order_facts(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "invalid_type",
            'facts is a JSON object of policy inputs such as {"customer.risk_class": "low"}',
        )
    for key, item in value.items():
        if key in _RESERVED_FACTS:
            raise PydanticCustomError(
                "invalid_value",
                "facts.{key}: send it as the top-level field '{field}'",
                {"key": key, "field": _RESERVED_FACTS[key]},
            )
        if not _FACT_KEY.fullmatch(key):
            raise PydanticCustomError(
                "invalid_value",
                "facts.{key}: a fact is named by its policy input, group.name "
                "(e.g. 'customer.risk_class')",
                {"key": key[:60]},
            )
        _fact_value(key, item)
    return value


def _customer_facts(value: Any) -> dict[str, Any]:
    """Only the shape: each name and value is checked against the policy by
    ``check_customer_facts`` (every problem reported, with its path)."""
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "invalid_type",
            'facts is a JSON object of customer inputs such as {"risk_class": "low"}',
        )
    return value


# Customer inputs the ledger holds in its own columns: never a fact. Value: where to put it
# instead, in a PUT body ("field") and in a CSV import ("column").
LEDGER_FACTS = {
    "customer.credit_limit": {
        "field": "send it as the top-level field 'credit_limit'",
        "column": "use the column 'credit_limit'",
    },
    "customer.days_past_due": {
        "field": "send it as the top-level field 'days_past_due'",
        "column": "use the column 'days_past_due'",
    },
    "customer.exposure": {
        "field": "it is computed (open receivables + open approved orders): send the "
        "top-level field 'open_receivables'",
        "column": "it is computed (open receivables + open approved orders): use the "
        "column 'open_receivables'",
    },
    "customer.id": {
        "field": "the customer id is the one in the URL (/v1/customers/{id})",
        "column": "use the column 'customer_id'",
    },
}


class FactRefused(ValueError):
    """A customer fact name the policy does not accept: stable ``code``, human message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def customer_fact_spec(policy: Any, name: str, where: str = "field") -> Any:
    """The policy input (``InputDef``) of the customer fact ``name`` (``risk_class`` or
    ``customer.risk_class``); raises ``FactRefused``: ``ledger_field`` for a name the ledger
    holds in its own column (the message names the ``where`` — "field" or "column" — to
    use), ``unknown_fact`` for a name that is not a customer input of the policy (with a
    "did you mean")."""
    import difflib

    path = name if name.startswith("customer.") else f"customer.{name}"
    if path in LEDGER_FACTS:
        short = path.removeprefix("customer.")
        raise FactRefused(
            "ledger_field",
            f"{short} is held by the ledger, not a fact; {LEDGER_FACTS[path][where]}",
        )
    spec = policy.inputs.get(path) if _CUSTOMER_FACT.fullmatch(name) else None
    if spec is None:
        known = sorted(
            p.removeprefix("customer.")
            for p in policy.inputs
            if p.startswith("customer.") and p not in LEDGER_FACTS
        )
        close = difflib.get_close_matches(path.removeprefix("customer."), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FactRefused(
            "unknown_fact",
            f"{name[:60]!r} is not a customer input of the policy{hint}; known: "
            + ", ".join(known),
        )
    return spec


def customer_fact_value(spec: Any, raw: Any, minor_units: int) -> Any:
    """``raw`` checked against the input's type, range and allowed values
    (``engine.inputs.coerce``) as the JSON value the ledger stores: numbers other than
    whole ``int`` inputs as exact decimal strings (money in the policy currency's minor
    unit). Raises ``InputErrors``."""
    from engine.inputs import coerce

    value = coerce(spec, raw, minor_units)
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def check_customer_facts(
    policy: Any, facts: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The customer facts of a PUT body checked against the policy, as the ledger stores them
    (keyed without the ``customer.`` group), and EVERY problem as ``{path: "facts.NAME",
    code, message}`` (the CSV import uses the same two checks per column and cell)."""
    from engine.inputs import InputErrors

    clean: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name, raw in facts.items():
        path = f"facts.{name[:60]}"
        try:
            spec = customer_fact_spec(policy, name)
        except FactRefused as e:
            errors.append({"path": path, "code": e.code, "message": str(e)})
            continue
        if isinstance(raw, float | Decimal) and spec.type.kind == "money":
            continue  # reported by money_facts (inexact_number)
        try:
            clean[spec.path.removeprefix("customer.")] = customer_fact_value(
                spec, raw, policy.minor_units
            )
        except InputErrors as e:
            errors.extend(
                {"path": path, "code": err.code, "message": err.message} for err in e.errors
            )
    return clean, errors


Money = Annotated[Decimal, BeforeValidator(parse_money)]
Whole = Annotated[int, BeforeValidator(_whole)]
Identifier = Annotated[str, BeforeValidator(parse_identifier)]
CustomerId = Annotated[str, BeforeValidator(parse_customer_id)]
Currency = Annotated[str, BeforeValidator(parse_currency)]
IsoDate = Annotated[date, BeforeValidator(parse_date)]
OrderFacts = Annotated[dict[str, Any], BeforeValidator(_order_facts)]
CustomerFacts = Annotated[dict[str, Any], BeforeValidator(_customer_facts)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionRequest(_Body):
    """An order to decide. Money as a string (``"12500.00"``) or whole number."""

    order_id: Identifier
    customer_id: CustomerId
    amount: Money = Field(description='Order value, e.g. "12500.00", in `currency`')
    currency: Currency
    payment_term_days: Whole
    order_date: IsoDate = Field(  # type: ignore[assignment]
        default=None,
        description="Date of the order, YYYY-MM-DD (ISO 8601); picks the exchange rate of an "
        "order in another currency than the policy's (latest rate on or before it). Default: "
        "today.",
    )
    facts: OrderFacts = Field(
        default_factory=dict,
        description="Other policy inputs for this order by input name, e.g. "
        '{"customer.risk_class": "low"} (request values win over the ledger)',
    )


class CustomerBody(_Body):
    """A customer's credit position. ``currency`` and ``credit_limit`` are set; a field
    left out keeps what the ledger holds for an existing customer (``open_receivables``
    and ``days_past_due`` may have been moved by ledger events since; ``facts`` as a whole)
    and starts at 0 / none for a new one. ``open_orders`` and ``credit_balance`` belong to
    the ledger and are never set here."""

    currency: Currency
    credit_limit: Money
    # Optional, an explicit null is refused (null_value) as everywhere in the API.
    open_receivables: Money = Field(  # type: ignore[assignment]
        default=None,
        description="Set the open receivables (reconciliation with the AR ledger); left "
        "out: kept (new customer: 0)",
    )
    days_past_due: Whole = Field(  # type: ignore[assignment]
        default=None, description="Left out: kept (new customer: 0)"
    )
    facts: CustomerFacts = Field(  # type: ignore[assignment]
        default=None,
        description='Other customer inputs of the policy, e.g. {"risk_class": "low", '
        '"years_in_business": 12}; replaces the stored facts; left out: kept',
    )


def _rate_value(value: Any) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float | Decimal):
        raise PydanticCustomError(
            "inexact_number", 'a rate is a JSON string such as "0.9234" (or a whole number)'
        )
    if isinstance(value, int):
        rate = Decimal(value)
    elif isinstance(value, str) and len(value) <= 40 and _NUMBER.fullmatch(value):
        rate = Decimal(value)
    else:
        raise PydanticCustomError("invalid_type", 'expected a rate as a string such as "0.9234"')
    if rate <= 0:
        raise PydanticCustomError("below_min", "a rate must be positive")
    if rate != rate.quantize(Decimal("1E-10")) or rate >= Decimal(10) ** 9:
        raise PydanticCustomError("out_of_range", "at most 10 decimals and below 10^9")
    return rate + 0


RateValue = Annotated[Decimal, BeforeValidator(_rate_value)]


class FxRateItem(_Body):
    currency: Currency
    rate: RateValue = Field(
        description="Units of `base` for ONE unit of `currency` on `as_of` "
        '(base EUR, currency USD, rate "0.92": 1 USD = 0.92 EUR)'
    )
    as_of: IsoDate = Field(description="Date of the rate, YYYY-MM-DD (ISO 8601)")


class FxRatesBody(_Body):
    """Exchange rates into the policy's currency (``base``); inserted or replaced by
    (base, currency, as_of)."""

    base: Currency
    rates: list[FxRateItem] = Field(min_length=1, max_length=10000)


class EventBody(_Body):
    """A ledger event. Money as a string (``"1200.00"``), in the customer's currency."""

    event_id: Identifier = Field(description="Caller's unique id of the event (idempotency)")
    type: Literal["order_cancelled", "invoice_issued", "payment_received", "credit_note"]
    # Optional: left out when the type does not need them; an explicit null is refused
    # (null_value), as everywhere in the API.
    order_id: Identifier = None  # type: ignore[assignment]
    amount: Money = None  # type: ignore[assignment]
    currency: Currency = None  # type: ignore[assignment]


def require_json(request: Request) -> None:
    """Refuse (415 ``unsupported_media_type``) a body not sent as ``application/json``
    (a ``charset`` parameter, if any, must be UTF-8): a form or text body is never read as
    JSON by accident. Other JSON media types (``application/*+json``) are refused too:
    the API speaks one."""
    raw = request.headers.get("content-type")
    media, *params = (raw or "").split(";")
    ok = media.strip().lower() == "application/json"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            ok = False
    if not ok:
        sent = f"'{raw[:80]}'" if raw else "no Content-Type"
        raise Problem(
            "unsupported_media_type",
            f"send the body as JSON with 'Content-Type: application/json' (UTF-8); got {sent}",
            status=415,
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw request body, refusing more than ``limit`` bytes (413) before any parsing.

    A client that closes the connection before its whole body arrived (``ClientDisconnect``)
    is its own doing, not a server error: one warning line (no traceback) and a 499
    ``client_closed_request`` problem, which the client never sees but which the request
    log and the metrics count as a client error, never a 500."""
    import logging

    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Problem("invalid_request", "Content-Length is not a number", status=400) from None
        if size > limit:
            raise Problem(
                "request_too_large", f"the body is {size} bytes; at most {limit} are accepted"
            )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem("request_too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
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
            f"the client closed the connection after {size} bytes of the body; nothing was done",
        ) from None
    return b"".join(chunks)


def parse_body(data: bytes) -> Any:
    from engine.inputs import InputError, InputErrors, parse_request_json

    if not data.strip():
        raise InputErrors([InputError("", "invalid_json", "request: the body is empty")])
    return parse_request_json(data, "request")


def validate_body(model: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        raise Problem(
            "invalid_request",
            "the body must be a JSON object",
            errors=[{"path": "", "code": "invalid_type", "message": "expected a JSON object"}],
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


def engine_path(path: str) -> str:
    """Engine request path → the path in the POST /v1/decisions body."""
    return {
        "order.amount": "amount",
        "order.payment_term_days": "payment_term_days",
        "order.currency": "currency",
        "order.id": "order_id",
        "customer.id": "customer_id",
    }.get(path, f"facts.{path}" if path else path)


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


def currency_check(policy: Any, currency: str) -> None:
    """Refuse (422 ``currency_mismatch``) an order in ``currency`` other than the policy's
    when no exchange rate of that currency is loaded at all."""
    if currency != policy.currency:
        message = (
            f"the policy decides in {policy.currency} and no {currency}->{policy.currency} "
            "exchange rates are loaded: load them with PUT /v1/fx-rates (admin) or send "
            f"the amount in {policy.currency}"
        )
        raise Problem(
            "invalid_request",
            message,
            errors=[{"path": "currency", "code": "currency_mismatch", "message": message}],
        )


def customer_currency_message(policy: Any, currency: str) -> str:
    """Why a customer (PUT or CSV import) in ``currency`` is refused: the ledger holds every
    customer in the policy currency."""
    return (
        f"customers are kept in the policy currency {policy.currency} only, not {currency}: "
        f"send the credit limit and receivables in {policy.currency} (orders in another "
        "currency are converted with the rates of PUT /v1/fx-rates)"
    )


def customer_currency_check(policy: Any, currency: str) -> None:
    if currency != policy.currency:
        message = customer_currency_message(policy, currency)
        raise Problem(
            "invalid_request",
            message,
            errors=[{"path": "currency", "code": "currency_mismatch", "message": message}],
        )


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
    from api.chain import jsonable

    return jsonable(obj)


_STORE_FIELDS = ("order_id", "customer_id", "amount", "currency", "payment_term_days", "facts")


def store_refusal(exc: ValueError) -> Problem:
    """A ``ValueError`` of the store (the order or customer does not fit the ledger) as a
    422 problem (409 for an order id already used for another customer)."""
    from api.store import OrderConflict

    message = str(exc)
    head = message.split(":", 1)[0].strip()
    path = head if head in _STORE_FIELDS or head.startswith("facts") else ""
    if path == "" and "currency" in message:
        path = "currency"
    if isinstance(exc, OrderConflict):
        return Problem(
            "conflict",
            message,
            errors=[{"path": "order_id", "code": "order_conflict", "message": message}],
        )
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


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with ``json_body`` (the body is
    read raw, so FastAPI cannot document it by itself)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
