"""The HTTP API: ``create_app(settings) -> FastAPI`` (routes under ``/v1``).

At start the app loads and compiles the policy once (``settings.policy_path``), applies the
database migrations (``Store.upgrade``) and records the policy source (``save_policy``) so
every decision can be replayed under the exact policy text that made it.

Routes (role in brackets; ``admin`` may do everything)::

    POST /v1/decisions                 [order_entry]   decide one order, record it
    GET  /v1/decisions/{id}            [reviewer, compliance]
    GET  /v1/decisions                 [reviewer, compliance]  filters + cursor pagination
    GET  /v1/decisions/{id}/replay     [compliance]    re-evaluate under the stored policy
    PUT  /v1/customers/{id}            [admin]         credit limit, ledger, facts
    GET  /v1/customers/{id}            [order_entry]
    POST /v1/customers/{id}/events     [order_entry]   ledger event (cancel, invoice, payment,
                                                       credit note), idempotent by event_id
    POST /v1/customers/import          [admin]         customers from CSV, all or nothing
    PUT  /v1/fx-rates                  [admin]         exchange rates into the policy currency
    GET  /v1/decisions/export          [compliance]    CSV / JSON lines, streamed, masked
    GET  /v1/audit/verify              [compliance]    check the decision log's hash chain
    GET  /v1/policy                    [policy_owner, compliance, reviewer]
    GET  /healthz, /readyz, /metrics   (no key)

Request bodies are read raw (at most ``settings.max_request_bytes``, 413 beyond, checked
before parsing) and parsed with ``engine.inputs.parse_request_json``: numbers stay exact
``Decimal``, duplicate keys and ``NaN`` are refused. Money is a JSON string such as
``"12500.00"`` or a whole JSON number; a JSON number with a fraction is refused
(``inexact_number``): most JSON encoders make it a binary float before it is sent.

Every error is an ``application/problem+json`` body (``api.problems``). A database or engine
failure answers 503/500 and never a decision. Logs are JSON lines (logger ``creditgate``)
carrying the decision id.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from api.auth import Caller, require
from api.problems import (
    Problem,
    install_handlers,
    internal_error_response,
    problem_response,
    validation_errors,
)
from engine.decision import Decision
from engine.inputs import InputErrors

__all__ = ["create_app", "JsonFormatter", "configure_logging"]

log = logging.getLogger("creditgate.api")

_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$", re.ASCII)
MAX_MONEY = Decimal(10) ** 15
_IDENT = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,200}$")


# --------------------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and every ``extra``
    field (``decision_id``, ``order_id``, ``outcome``, ``request_id``, ...)."""

    _RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._RESERVED and not key.startswith("_") and key != "color_message":
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which test runners and servers may replace)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: int = logging.INFO, *, root: bool = False) -> None:
    """Send the ``creditgate`` loggers (or, with ``root``, every logger) to stderr as JSON
    lines. Idempotent."""
    target = logging.getLogger() if root else logging.getLogger("creditgate")
    if not any(getattr(h, "_creditgate", False) for h in target.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        handler._creditgate = True  # type: ignore[attr-defined]
        target.addHandler(handler)
    target.setLevel(level)
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    if not root:
        target.propagate = False


# --------------------------------------------------------------------------- request models


def _money(value: Any) -> Decimal:
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


def _identifier(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_type", "expected text")
    if not _IDENT.fullmatch(value):
        raise PydanticCustomError(
            "invalid_value", "an identifier is text of 1 to 200 printable characters"
        )
    return value


def _currency(value: Any) -> str:
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
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "invalid_type",
            'facts is a JSON object of customer inputs such as {"risk_class": "low"}',
        )
    for key, item in value.items():
        if not _CUSTOMER_FACT.fullmatch(key):
            raise PydanticCustomError(
                "invalid_value",
                "facts.{key}: a customer fact is named by its policy input without the group "
                "(e.g. 'risk_class')",
                {"key": key[:60]},
            )
        _fact_value(key, item)
    return value


Money = Annotated[Decimal, BeforeValidator(_money)]
Whole = Annotated[int, BeforeValidator(_whole)]
Identifier = Annotated[str, BeforeValidator(_identifier)]
Currency = Annotated[str, BeforeValidator(_currency)]
OrderFacts = Annotated[dict[str, Any], BeforeValidator(_order_facts)]
CustomerFacts = Annotated[dict[str, Any], BeforeValidator(_customer_facts)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionRequest(_Body):
    """An order to decide. Money as a string (``"12500.00"``) or whole number."""

    order_id: Identifier
    customer_id: Identifier
    amount: Money = Field(description='Order value, e.g. "12500.00", in `currency`')
    currency: Currency
    payment_term_days: Whole
    order_date: date | None = Field(
        default=None,
        description="Date of the order (ISO 8601); picks the exchange rate of an order in "
        "another currency than the policy's (latest rate on or before it). Default: today.",
    )
    facts: OrderFacts = Field(
        default_factory=dict,
        description="Other policy inputs for this order by input name, e.g. "
        '{"customer.risk_class": "low"} (request values win over the ledger)',
    )


class CustomerBody(_Body):
    """A customer's credit position (replaces what the ledger holds; ``open_orders`` is kept:
    it is the sum of the open approved orders)."""

    currency: Currency
    credit_limit: Money
    open_receivables: Money = Decimal(0)
    days_past_due: Whole = 0
    facts: CustomerFacts = Field(
        default_factory=dict,
        description='Other customer inputs of the policy, e.g. {"risk_class": "low", '
        '"years_in_business": 12}',
    )


# --------------------------------------------------------------------------- ledger, FX, import


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
    as_of: date


class FxRatesBody(_Body):
    """Exchange rates into the policy's currency (``base``); inserted or replaced by
    (base, currency, as_of)."""

    base: Currency
    rates: list[FxRateItem] = Field(min_length=1, max_length=10000)


class EventBody(_Body):
    """A ledger event. Money as a string (``"1200.00"``), in the customer's currency."""

    event_id: Identifier = Field(description="Caller's unique id of the event (idempotency)")
    type: Literal["order_cancelled", "invoice_issued", "payment_received", "credit_note"]
    order_id: Identifier | None = None
    amount: Money | None = None
    currency: Currency | None = None


IMPORT_BASE_COLUMNS = (
    "customer_id",
    "currency",
    "credit_limit",
    "open_receivables",
    "days_past_due",
)
IMPORT_REQUIRED = ("customer_id", "currency", "credit_limit")


def _csv_fact(spec: Any, cell: str, minor_units: int) -> Any:
    """A CSV cell as the JSON value the ledger stores for ``spec`` (raises InputErrors)."""
    from engine.inputs import coerce

    raw: Any = cell
    if spec.type.kind == "bool":
        low = cell.strip().lower()
        raw = {"true": True, "false": False}.get(low, cell)
    value = coerce(spec, raw, minor_units)
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def parse_customer_csv(data: bytes, policy: Any) -> list[dict[str, Any]]:
    """The rows of a customer import; raises ``ImportErrors`` listing every bad row
    (``{line, column, problem}``; line 1 is the header)."""
    import csv
    import io

    from api.store import ImportErrors

    errors: list[dict[str, Any]] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ImportErrors([{"line": 0, "column": "", "problem": f"not UTF-8: {e}"}]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise ImportErrors([{"line": 1, "column": "", "problem": f"CSV: {e}"}]) from None
    if not header:
        raise ImportErrors([{"line": 1, "column": "", "problem": "empty file: no header row"}])
    header = [h.strip() for h in header]
    facts: dict[str, Any] = {}
    for name in header:
        if header.count(name) > 1:
            errors.append({"line": 1, "column": name, "problem": "duplicate column"})
        elif name in IMPORT_BASE_COLUMNS:
            continue
        elif name.startswith("customer."):
            spec = policy.inputs.get(name)
            if spec is None:
                errors.append({"line": 1, "column": name, "problem": "not a policy input"})
            elif name in (
                "customer.credit_limit",
                "customer.exposure",
                "customer.id",
                "customer.days_past_due",
            ):
                errors.append(
                    {
                        "line": 1,
                        "column": name,
                        "problem": "owned by the ledger; use the column "
                        "without the 'customer.' prefix (exposure is computed)",
                    }
                )
            else:
                facts[name] = spec
        else:
            errors.append({"line": 1, "column": name, "problem": "unknown column"})
    for name in IMPORT_REQUIRED:
        if name not in header:
            errors.append({"line": 1, "column": name, "problem": "required column is missing"})
    if errors:
        raise ImportErrors(errors)
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not c.strip() for c in record):
                continue  # blank lines are skipped
            if len(record) != len(header):
                errors.append(
                    {
                        "line": line,
                        "column": "",
                        "problem": f"{len(record)} cells, the header has {len(header)}",
                    }
                )
                continue
            cells = dict(zip(header, record, strict=True))
            row, bad = _import_row(cells, facts, policy, line)
            errors.extend(bad)
            cid = row.get("customer_id")
            if cid is not None:
                if cid in seen:
                    errors.append(
                        {
                            "line": line,
                            "column": "customer_id",
                            "problem": f"duplicate of line {seen[cid]}",
                        }
                    )
                else:
                    seen[cid] = line
            if not bad:
                rows.append(row)
    except csv.Error as e:
        errors.append({"line": reader.line_num, "column": "", "problem": f"CSV: {e}"})
    if errors:
        raise ImportErrors(errors)
    if not rows:
        raise ImportErrors([{"line": 1, "column": "", "problem": "no customer rows"}])
    return rows


def _import_row(
    cells: dict[str, str], facts: dict[str, Any], policy: Any, line: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from engine.inputs import InputErrors

    bad: list[dict[str, Any]] = []
    row: dict[str, Any] = {"line": line, "facts": {}}

    def check(column: str, fn: Callable[[str], Any]) -> None:
        try:
            row[column] = fn(cells.get(column, "").strip())
        except (PydanticCustomError, ValueError) as e:
            msg = e.message() if isinstance(e, PydanticCustomError) else str(e)
            bad.append({"line": line, "column": column, "problem": msg})

    def money(cell: str) -> Decimal:
        value = _money(cell or "0")
        if value < 0:
            raise ValueError("must not be negative")
        if value != round(value, policy.minor_units):
            raise ValueError(f"more than {policy.minor_units} decimals")
        return value.quantize(Decimal(1).scaleb(-policy.minor_units))

    def currency(cell: str) -> str:
        code = _currency(cell)
        if code != policy.currency:
            raise ValueError(f"the policy decides in {policy.currency}, not {code}")
        return code

    def days(cell: str) -> int:
        if not cell:
            return 0
        if not cell.isdigit() or len(cell) > 6:
            raise ValueError("a whole number of days (0 or more)")
        return int(cell)

    def required_money(cell: str) -> Decimal:
        if not cell:
            raise ValueError("required")
        return money(cell)

    check("customer_id", _identifier)
    check("currency", currency)
    check("credit_limit", required_money)
    check("open_receivables", money)
    check("days_past_due", days)
    for name, spec in facts.items():
        cell = cells.get(name, "")
        if cell == "":
            continue  # not set: the policy default (or the order's facts) applies
        try:
            row["facts"][name.removeprefix("customer.")] = _csv_fact(spec, cell, policy.minor_units)
        except InputErrors as e:
            bad.append({"line": line, "column": name, "problem": e.errors[0].message})
    return row, bad


def _sensitive_paths(policy: Any) -> set[str]:
    return {path for path, spec in policy.inputs.items() if getattr(spec, "sensitive", False)}


MASK = "***"


def mask_record(row: dict[str, Any], sensitive: set[str]) -> dict[str, Any]:
    """A copy of a log record with the sensitive inputs masked (``"***"``) in the request
    snapshot and in the decision's trail (its inputs and every rule's reads)."""
    import copy

    if not sensitive:
        return row
    out = copy.deepcopy(row)
    request = out.get("request") or {}
    for path in sensitive:
        group, _, name = path.partition(".")
        if isinstance(request.get(group), dict) and name in request[group]:
            request[group][name] = MASK
    trail = (out.get("decision") or {}).get("trail") or {}
    inputs = trail.get("inputs")
    if isinstance(inputs, dict):
        for path in sensitive & set(inputs):
            inputs[path] = MASK
    for rule in trail.get("rules") or []:
        reads = rule.get("reads") if isinstance(rule, dict) else None
        if isinstance(reads, dict):
            for path in sensitive & set(reads):
                reads[path] = MASK
    return out


EXPORT_COLUMNS = (
    "seq",
    "decision_id",
    "created_at",
    "order_id",
    "customer_id",
    "outcome",
    "kind",
    "policy_id",
    "policy_version",
    "policy_sha256",
    "caller",
    "content_hash",
    "record_hash",
    "prev_hash",
    "fx",
    "request",
    "decision",
)


# --------------------------------------------------------------------------- helpers


async def read_body(request: Request, limit: int) -> bytes:
    """The raw request body, refusing more than ``limit`` bytes (413) before any parsing."""
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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem("request_too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(data: bytes) -> Any:
    from engine.inputs import InputError, InputErrors, parse_request_json

    if not data.strip():
        raise InputErrors([InputError("", "invalid_json", "request: the body is empty")])
    return parse_request_json(data, "request")


def _validate(model: type[BaseModel], data: Any) -> Any:
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


def _engine_path(path: str) -> str:
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


def _money_facts(policy: Any, facts: dict[str, Any], where: str) -> list[dict[str, str]]:
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


def _currency_check(policy: Any, currency: str) -> None:
    if currency != policy.currency:
        raise Problem(
            "invalid_request",
            f"this service decides in {policy.currency}; the amount is in {currency}",
            errors=[
                {
                    "path": "currency",
                    "code": "currency_mismatch",
                    "message": f"the policy decides in {policy.currency}, not {currency}; "
                    "convert the amount first",
                }
            ],
        )


def _decimals_check(policy: Any, **amounts: Decimal) -> None:
    errors = []
    for path, amount in amounts.items():
        if amount != round(amount, policy.minor_units):
            errors.append(
                {
                    "path": path,
                    "code": "too_many_decimals",
                    "message": f"{amount} has more than {policy.minor_units} decimals "
                    f"({policy.currency})",
                }
            )
    if errors:
        raise Problem("invalid_request", "amounts with too many decimals", errors=errors)


def _json(obj: Any) -> Any:
    """Store rows as JSON data: money (``Decimal``) and datetimes as strings, never floats."""
    from api.chain import jsonable

    return jsonable(obj)


_STORE_FIELDS = ("order_id", "customer_id", "amount", "currency", "payment_term_days", "facts")


def _store_refusal(exc: ValueError) -> Problem:
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


def _parse_when(value: str | None, name: str) -> date | datetime | None:
    """``from`` / ``to`` query values: a date (``2026-11-29``, the whole day) or an ISO 8601
    date-time (``2026-11-29T10:00:00Z``)."""
    if value is None:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)
    except ValueError:
        raise Problem(
            "invalid_request",
            f"{name!r} is not a date or date-time",
            errors=[
                {
                    "path": f"query.{name}",
                    "code": "invalid_value",
                    "message": "expected a date (2026-11-29) or an ISO 8601 date-time "
                    "(2026-11-29T10:00:00Z)",
                }
            ],
        ) from None


def _differences(stored: Any, replayed: Any, path: str = "") -> list[dict[str, Any]]:
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
                out.extend(_differences(stored[key], replayed[key], sub))
        return out
    if isinstance(stored, list) and isinstance(replayed, list) and len(stored) == len(replayed):
        out = []
        for i, (a, b) in enumerate(zip(stored, replayed, strict=True)):
            out.extend(_differences(a, b, f"{path}[{i}]"))
        return out
    if stored != replayed:
        return [{"path": path, "stored": stored, "replayed": replayed}]
    return []


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can coexist)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "creditgate_decisions",
            "Decisions answered, by outcome and kind (new, repeat, amended)",
            ["outcome", "kind"],
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "creditgate_decision_seconds",
            "Time to decide and record one order (engine + database)",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.request_seconds = Histogram(
            "creditgate_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
        )
        self.errors = Counter(
            "creditgate_http_errors",
            "HTTP responses with status 4xx/5xx, by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.policy = Gauge(
            "creditgate_policy_info",
            "The policy in force (value 1)",
            ["policy_id", "version", "sha256"],
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# --------------------------------------------------------------------------- the app


class Replayer:
    """Compiled policies by sha256 (compiled once, from the stored source text)."""

    def __init__(self, store: Any, current: Any):
        self._store = store
        self._cache: dict[str, Any] = {current.policy.sha256: current}
        self._lock = threading.Lock()

    def compiled(self, sha256: str) -> Any:
        hit = self._cache.get(sha256)
        if hit is not None:
            return hit
        from rules.compile import compile_policy
        from rules.validate import load_policy_text

        with self._lock:
            hit = self._cache.get(sha256)
            if hit is None:
                source = self._store.policy_source(sha256)
                if source is None:
                    raise Problem(
                        "conflict",
                        f"the policy {sha256[:12]} that made this decision is not stored; "
                        "it cannot be replayed",
                    )
                hit = compile_policy(load_policy_text(source, f"policy:{sha256[:12]}"))
                self._cache[sha256] = hit
            return hit


def _route_table() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(method, path, roles)`` of every route that needs a key (for docs and tests)."""
    return [
        ("POST", "/v1/decisions", ("order_entry",)),
        ("GET", "/v1/decisions", ("reviewer", "compliance")),
        ("GET", "/v1/decisions/export", ("compliance",)),
        ("GET", "/v1/decisions/{decision_id}", ("reviewer", "compliance")),
        ("GET", "/v1/decisions/{decision_id}/replay", ("compliance",)),
        ("PUT", "/v1/customers/{customer_id}", ()),
        ("GET", "/v1/customers/{customer_id}", ("order_entry",)),
        ("POST", "/v1/customers/{customer_id}/events", ("order_entry",)),
        ("POST", "/v1/customers/import", ()),
        ("PUT", "/v1/fx-rates", ()),
        ("GET", "/v1/audit/verify", ("compliance",)),
        ("GET", "/v1/policy", ("policy_owner", "compliance", "reviewer")),
    ]


ROUTES = _route_table()


def _roles(method: str, path: str) -> tuple[str, ...]:
    for m, p, roles in ROUTES:
        if (m, p) == (method, path):
            return roles
    raise KeyError((method, path))


def _csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula (OWASP "CSV injection"): text
    starting with = + - @ or a tab/CR gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def create_app(settings: Any = None, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The FastAPI app for ``settings`` (default: ``Settings()`` from the environment).

    Loads and compiles the policy (raises ``PolicyErrors`` if it is broken), applies the
    migrations and records the policy source."""
    from api.settings import Settings
    from api.store import EventConflict, FxRateMissing, ImportErrors, Store
    from engine.evaluate import evaluate, load

    settings = settings or Settings()
    configure_logging()
    compiled = load(str(settings.policy_path))
    policy = compiled.policy
    store = Store(settings.database_url)
    store.upgrade()
    store.save_policy(policy)
    metrics = Metrics()
    metrics.policy.labels(policy.id, policy.version, policy.sha256).set(1)
    replayer = Replayer(store, compiled)
    max_bytes = int(settings.max_request_bytes)
    import_bytes = int(getattr(settings, "max_import_bytes", 0) or max(max_bytes, 16 * 2**20))

    app = FastAPI(
        title="Creditgate",
        version="0.1.0",
        description="Credit decisions (approve / refer / decline) for sales orders on credit, "
        "under a declarative YAML credit policy, with a hash-chained decision log. Errors are "
        "application/problem+json (RFC 9457).",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.compiled = compiled
    app.state.metrics = metrics
    install_handlers(app, path_map=_engine_path)

    def evaluate_fn(request: dict[str, Any]) -> Decision:
        return evaluate(compiled, request, clock=clock)

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if len(request_id) > 100 or not request_id.isprintable():
            request_id = uuid.uuid4().hex
        request.state.request_id = request_id
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # no stack trace to the client; all of it to the log
            log.exception(
                "unhandled error",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.url.path,
                },
            )
            response = internal_error_response()
        elapsed = time.perf_counter() - start
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        metrics.request_seconds.labels(request.method, route).observe(elapsed)
        if response.status_code >= 400:
            metrics.errors.labels(request.method, route, str(response.status_code)).inc()
        response.headers["X-Request-ID"] = request_id
        if route not in ("/healthz", "/metrics", "/readyz"):
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 3),
                    "decision_id": getattr(request.state, "decision_id", None),
                },
            )
        return response

    # -- decisions -----------------------------------------------------------------------

    @app.post(
        "/v1/decisions",
        tags=["decisions"],
        summary="Decide one order (approve / refer / decline) and record it",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": DecisionRequest.model_json_schema()}},
            }
        },
    )
    async def post_decision(
        request: Request,
        caller: Annotated[Caller, Depends(require(*_roles("POST", "/v1/decisions")))],
    ) -> JSONResponse:
        body = _parse(await read_body(request, max_bytes))
        req = _validate(DecisionRequest, body)
        if req.currency != policy.currency and not await run_in_threadpool(
            store.has_fx_rates, policy.currency, req.currency
        ):
            _currency_check(policy, req.currency)  # no rate of this currency at all
        _decimals_check(policy, amount=req.amount)
        errors = _money_facts(policy, req.facts, "facts")
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
                    evaluate_fn,
                    caller.name,
                    decision_currency=policy.currency,
                    minor_units=policy.minor_units,
                    today=clock().date() if clock else None,
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
            raise _store_refusal(exc) from None
        metrics.decision_seconds.observe(time.perf_counter() - start)
        metrics.decisions.labels(decision.outcome, kind).inc()
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
                "caller": caller.name,
            },
        )
        return JSONResponse({**decision.model_dump(mode="json"), "kind": kind})

    @app.get("/v1/decisions", tags=["decisions"], summary="List decisions (newest first)")
    def list_decisions(
        _: Annotated[Caller, Depends(require(*_roles("GET", "/v1/decisions")))],
        customer_id: str | None = None,
        outcome: Literal["approve", "refer", "decline"] | None = None,
        date_from: Annotated[
            str | None,
            Query(alias="from", description="From this date or date-time (inclusive)"),
        ] = None,
        date_to: Annotated[
            str | None,
            Query(alias="to", description="Up to this date (whole day) or date-time (exclusive)"),
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
        rows, next_cursor = store.list_decisions(
            customer_id=customer_id,
            outcome=outcome,
            date_from=_parse_when(date_from, "from"),
            date_to=_parse_when(date_to, "to"),
            rule_id=rule_id,
            policy_version=policy_version,
            cursor=cursor,
            limit=limit,
        )
        return JSONResponse(_json({"items": rows, "next_cursor": next_cursor}))

    def _masker() -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Masks the inputs marked sensitive by the policy in force or by the policy
        version that made the record."""
        current = _sensitive_paths(policy)
        by_sha: dict[str, set[str]] = {policy.sha256: current}

        def mask(row: dict[str, Any]) -> dict[str, Any]:
            sha = row.get("policy_sha256") or ""
            if sha not in by_sha:
                try:
                    by_sha[sha] = current | _sensitive_paths(replayer.compiled(sha).policy)
                except Problem:  # source not stored: the current policy's marks
                    by_sha[sha] = current
            return mask_record(row, by_sha[sha])

        return mask

    @app.get(
        "/v1/decisions/export",
        tags=["decisions"],
        summary="Export the decision log (CSV or JSON lines), sensitive inputs masked",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
    )
    def export_decisions(
        _: Annotated[Caller, Depends(require(*_roles("GET", "/v1/decisions/export")))],
        format: Literal["csv", "jsonl"] = "jsonl",  # noqa: A002 - the query name
        customer_id: Annotated[str | None, Query(max_length=200)] = None,
        date_from: Annotated[
            str | None, Query(alias="from", description="From this date or date-time")
        ] = None,
        date_to: Annotated[
            str | None, Query(alias="to", description="Up to this date (whole day) or date-time")
        ] = None,
    ) -> Response:
        import csv
        import io

        from fastapi.responses import StreamingResponse

        start, end = _parse_when(date_from, "from"), _parse_when(date_to, "to")
        mask = _masker()
        rows = store.iter_decisions(customer_id=customer_id, date_from=start, date_to=end)

        def jsonl() -> Any:
            for row in rows:
                yield json.dumps(_json(mask(row)), ensure_ascii=False) + "\n"

        def csv_lines() -> Any:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\r\n")
            writer.writerow(EXPORT_COLUMNS)
            for row in rows:
                data = _json(mask(row))
                writer.writerow(
                    [
                        _csv_cell(
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
            if buf.getvalue():
                yield buf.getvalue()

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
        return StreamingResponse(
            csv_lines() if format == "csv" else jsonl(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="decisions-{stamp}.{format}"'},
        )

    def _get_decision(decision_id: str) -> dict[str, Any]:
        row = store.get_decision(decision_id)
        if row is None:
            raise Problem("unknown_decision", f"no decision {decision_id!r}")
        return row

    @app.get("/v1/decisions/{decision_id}", tags=["decisions"], summary="One recorded decision")
    def get_decision(
        decision_id: Annotated[str, Path(max_length=200)],
        _: Annotated[Caller, Depends(require(*_roles("GET", "/v1/decisions/{decision_id}")))],
    ) -> JSONResponse:
        return JSONResponse(_json(_get_decision(decision_id)))

    @app.get(
        "/v1/decisions/{decision_id}/replay",
        tags=["decisions"],
        summary="Re-evaluate a recorded decision under the policy that made it",
    )
    def replay_decision(
        decision_id: Annotated[str, Path(max_length=200)],
        _: Annotated[
            Caller, Depends(require(*_roles("GET", "/v1/decisions/{decision_id}/replay")))
        ],
    ) -> JSONResponse:
        row = _get_decision(decision_id)
        stored = Decision.model_validate(row["decision"])
        replay_policy = replayer.compiled(row.get("policy_sha256") or stored.policy.sha256)
        replayed = evaluate(replay_policy, row["request"])
        diffs = _differences(stored.comparable(), replayed.comparable())
        return JSONResponse(
            _json(
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

    # -- customers -----------------------------------------------------------------------

    @app.put(
        "/v1/customers/{customer_id}",
        tags=["customers"],
        summary="Create or replace a customer's credit position",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CustomerBody.model_json_schema()}},
            }
        },
    )
    async def put_customer(
        request: Request,
        customer_id: Annotated[str, Path(max_length=200)],
        _: Annotated[Caller, Depends(require(*_roles("PUT", "/v1/customers/{customer_id}")))],
    ) -> JSONResponse:
        try:
            _identifier(customer_id)
        except PydanticCustomError as exc:
            raise Problem(
                "invalid_request",
                "the customer id is not valid",
                errors=[{"path": "customer_id", "code": exc.type, "message": exc.message()}],
            ) from None
        body = _validate(CustomerBody, _parse(await read_body(request, max_bytes)))
        _currency_check(policy, body.currency)
        _decimals_check(
            policy, credit_limit=body.credit_limit, open_receivables=body.open_receivables
        )
        errors = [
            {"path": p, "code": "below_min", "message": "must not be negative"}
            for p, v in (
                ("credit_limit", body.credit_limit),
                ("open_receivables", body.open_receivables),
                ("days_past_due", body.days_past_due),
            )
            if v < 0
        ]
        errors += _money_facts(policy, body.facts, "facts")
        if errors:
            raise Problem("invalid_request", "the customer is not valid", errors=errors)
        try:
            row = await run_in_threadpool(
                partial(
                    store.put_customer,
                    customer_id,
                    currency=body.currency,
                    credit_limit=body.credit_limit,
                    open_receivables=body.open_receivables,
                    days_past_due=body.days_past_due,
                    facts=body.facts,
                )
            )
        except ValueError as exc:
            raise _store_refusal(exc) from None
        return JSONResponse(_json(row))

    @app.get("/v1/customers/{customer_id}", tags=["customers"], summary="A customer's position")
    def get_customer(
        customer_id: Annotated[str, Path(max_length=200)],
        _: Annotated[Caller, Depends(require(*_roles("GET", "/v1/customers/{customer_id}")))],
    ) -> JSONResponse:
        row = store.get_customer(customer_id)
        if row is None:
            raise Problem("unknown_customer", f"no customer {customer_id!r}")
        return JSONResponse(_json(row))

    @app.post(
        "/v1/customers/{customer_id}/events",
        tags=["customers"],
        summary="Record a ledger event (order cancelled, invoice, payment, credit note)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": EventBody.model_json_schema()}},
            }
        },
    )
    async def post_event(
        request: Request,
        customer_id: Annotated[str, Path(max_length=200)],
        caller: Annotated[
            Caller, Depends(require(*_roles("POST", "/v1/customers/{customer_id}/events")))
        ],
    ) -> JSONResponse:
        body = _validate(EventBody, _parse(await read_body(request, max_bytes)))
        if body.amount is not None:
            if body.amount <= 0:
                raise Problem(
                    "invalid_request",
                    "an event amount must be positive (the type gives the direction)",
                    errors=[{"path": "amount", "code": "below_min", "message": "must be > 0"}],
                )
            _decimals_check(policy, amount=body.amount)
        event = body.model_dump(exclude_none=True)
        try:
            result = await run_in_threadpool(store.apply_event, customer_id, event, caller.name)
        except EventConflict as exc:
            message = str(exc)
            path = message.split(":", 1)[0] if ":" in message else ""
            raise Problem(
                "conflict",
                message,
                errors=[{"path": path, "code": "ledger_conflict", "message": message}],
            ) from None
        except ValueError as exc:
            raise _store_refusal(exc) from None
        return JSONResponse(_json(result))

    @app.post(
        "/v1/customers/import",
        tags=["customers"],
        summary="Create or replace customers from CSV (all or nothing)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        },
    )
    async def import_customers(
        request: Request,
        _: Annotated[Caller, Depends(require(*_roles("POST", "/v1/customers/import")))],
    ) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "text/csv":
            raise Problem(
                "unsupported_media_type", "send the customers as text/csv (UTF-8)", status=415
            )
        data = await read_body(request, import_bytes)
        try:
            rows = parse_customer_csv(data, policy)
            count = await run_in_threadpool(store.import_customers, rows)
        except ImportErrors as exc:
            n = len(exc.errors)
            raise Problem(
                "invalid_request",
                f"{n} problem{'s' if n != 1 else ''} in the CSV; nothing was imported",
                errors=[
                    {
                        "path": f"line {e['line']}" + (f".{e['column']}" if e["column"] else ""),
                        "code": "invalid_row",
                        "message": e["problem"],
                        "line": e["line"],
                        "column": e["column"],
                    }
                    for e in exc.errors
                ],
            ) from None
        return JSONResponse({"imported": count})

    @app.put(
        "/v1/fx-rates",
        tags=["fx"],
        summary="Load exchange rates into the policy's currency",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": FxRatesBody.model_json_schema()}},
            }
        },
    )
    async def put_fx_rates(
        request: Request,
        _: Annotated[Caller, Depends(require(*_roles("PUT", "/v1/fx-rates")))],
    ) -> JSONResponse:
        body = _validate(FxRatesBody, _parse(await read_body(request, max_bytes)))
        if body.base != policy.currency:
            raise Problem(
                "invalid_request",
                f"rates convert into the policy's currency {policy.currency}",
                errors=[
                    {
                        "path": "base",
                        "code": "currency_mismatch",
                        "message": f"base must be {policy.currency}",
                    }
                ],
            )
        errors = [
            {"path": f"rates[{i}].currency", "code": "invalid_value", "message": "same as the base"}
            for i, r in enumerate(body.rates)
            if r.currency == body.base
        ]
        if errors:
            raise Problem("invalid_request", "invalid rates", errors=errors)
        rates = [r.model_dump() for r in body.rates]
        try:
            count = await run_in_threadpool(store.put_fx_rates, body.base, rates)
        except ValueError as exc:
            raise _store_refusal(exc) from None
        return JSONResponse({"base": body.base, "stored": count})

    # -- audit and policy ----------------------------------------------------------------

    @app.get("/v1/audit/verify", tags=["audit"], summary="Verify the decision log's hash chain")
    def audit_verify(
        _: Annotated[Caller, Depends(require(*_roles("GET", "/v1/audit/verify")))],
    ) -> JSONResponse:
        return JSONResponse(_json(store.verify_chain()))

    @app.get("/v1/policy", tags=["policy"], summary="The policy in force")
    def get_policy(
        _: Annotated[Caller, Depends(require(*_roles("GET", "/v1/policy")))],
    ) -> JSONResponse:
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

    # -- operations ----------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: database and policy")
    def readyz() -> JSONResponse:
        try:
            store.ping()
        except Exception as exc:
            log.warning("not ready: database", extra={"error": type(exc).__name__})
            return problem_response(
                Problem("not_ready", "the database does not answer", headers={"Retry-After": "5"})
            )
        return JSONResponse(
            {
                "status": "ready",
                "policy": {"id": policy.id, "version": policy.version, "sha256": policy.sha256},
            }
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    return app
