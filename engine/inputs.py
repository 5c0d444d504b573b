"""Validate a credit request against the policy's declared inputs.

A request is JSON-shaped and nested by group::

    {"order": {"amount": "12500.00", "payment_term_days": 30},
     "customer": {"credit_limit": "50000", "exposure": "20000.50", "risk_class": "low", ...}}

Rules (documented in README "Requests"):

- Every declared input without a default must be present; optional inputs take their
  declared default. ``null`` is refused (``null_value``), never taken as "use the default".
- Unknown fields are rejected (a typo must not silently fall back to a default).
  ``order.id``, ``customer.id`` (text identifiers, recorded, never read by rules) and
  ``order.currency`` (must equal the policy currency) are always allowed.
- money: a JSON number or a string such as ``"10000.10"``, at most the currency's minor
  unit of decimals (EUR: 2), never a binary float; magnitude below 10**15.
- int: a whole number; decimal: up to 6 decimal places, magnitude below 10**12;
  bool: ``true``/``false`` only; enum: one of the declared values; string: text.
- Declared ``min``/``max`` bounds are inclusive.

All problems are collected into one ``InputErrors`` (never first-only).

The checks are compiled once per policy into closures (``RequestValidator``, one
``coercer`` per input); ``engine.evaluate`` runs the one its ``CompiledPolicy`` holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from rules.expr import Type
from rules.policy import InputDef, Policy

MAX_MONEY = Decimal(10) ** 15
MAX_INT = 10**15
MAX_DECIMAL = Decimal(10) ** 12
DECIMAL_PLACES = 6
IDENTIFIERS = ("order.id", "customer.id")
_HINTED = 100  # check_values: unknown paths given a "did you mean"
_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 controls, DEL, C1 controls
_ABSENT = object()  # a declared input the request does not send


@dataclass(frozen=True)
class InputError:
    """One problem with a request: dotted ``path``, stable ``code``, human ``message``."""

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.code}: {self.message}"
            if self.path
            else (f"{self.code}: {self.message}")
        )


class InputErrors(ValueError):
    """The request does not fit the policy's inputs; ``errors`` lists every problem."""

    def __init__(self, errors: list[InputError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class RequestValidator:
    """``validate_request`` for one policy, compiled once (every ``CompiledPolicy`` holds
    one as ``validate``): one coercion closure per declared input (``coercer``), the group
    names and the error texts that do not depend on the request. Calling it checks one
    request, with the same results and errors, in the same order, as ``validate_request``
    documents. Immutable; safe to share between threads."""

    def __init__(self, policy: Policy):
        self.currency = policy.currency
        self.groups = frozenset({p.split(".")[0] for p in policy.inputs} | {"order", "customer"})
        self._expected = str(sorted(self.groups))
        self._known = [*policy.inputs, *IDENTIFIERS, "order.currency"]
        self._inputs = tuple(
            (
                path,
                coercer(spec, policy.minor_units),
                spec.optional,
                spec.default,
                "null is not a value: send the "
                + str(spec.type)
                + (" or leave the field out to use its default" if spec.optional else ""),
                f"required {spec.type} field is missing",
            )
            for path, spec in policy.inputs.items()
        )
        self._by_path = {spec[0]: spec for spec in self._inputs}
        # group -> field name -> the input's index in _inputs, or the path of an identifier
        # or of order.currency
        self._slots: dict[str, dict[str, int | str]] = {g: {} for g in self.groups}
        for i, path in enumerate(policy.inputs):
            group, name = path.split(".", 1)
            self._slots[group][name] = i
        for path in (*IDENTIFIERS, "order.currency"):
            group, name = path.split(".", 1)
            self._slots[group][name] = path

    def check_values(self, values: dict[str, Any]) -> list[InputError]:
        """Every problem of ``values`` (input path → raw JSON value, e.g. an order's
        ``facts``) taken on their own, with the codes and messages of a full check: a path
        the policy does not declare (``unknown_field``, with a "did you mean"), ``null``
        (``null_value``), a value its input refuses (``invalid_type``, ``invalid_value``,
        ...). Required inputs that are absent are not reported (the rest of the request
        supplies them). Reads no database: the service runs it before any lock is taken."""
        errors: list[InputError] = []
        specs = self._by_path
        for path, raw in values.items():
            spec = specs.get(path)
            if spec is None:
                if path in IDENTIFIERS or path == "order.currency":
                    continue  # checked with the order's own fields
                # the "did you mean" costs a string comparison per input: only for the
                # first ones (a problem lists at most 100 anyway)
                errors.append(self._unknown(path, hint=len(errors) < _HINTED and len(path) < 100))
            elif raw is None:
                errors.append(InputError(path, "null_value", spec[4]))
            else:
                try:
                    spec[1](raw)
                except InputErrors as exc:
                    errors.extend(exc.errors)
        return errors

    def _unknown(self, path: str, hint: bool = True) -> InputError:
        import difflib

        close = difflib.get_close_matches(path, self._known, n=1, cutoff=0.7) if hint else ()
        text = f" (did you mean {close[0]!r}?)" if close else ""
        return InputError(
            path, "unknown_field", f"the policy declares no input {_short(path)}{text}"
        )

    def __call__(self, request: Any) -> tuple[dict[str, Any], dict[str, str]]:
        """Check ``request``: ``(values, identifiers)`` or ``InputErrors`` (see
        ``validate_request``)."""
        if type(request) is dict:
            checked = self._clean(request)
            if checked is not None:
                return checked
        return self._check(request)

    def _clean(self, request: dict) -> tuple[dict[str, Any], dict[str, str]] | None:
        """The usual request, in one pass: known groups and fields only, good identifiers,
        the policy's currency, every value accepted by its coercer. Returns what
        ``_check`` returns for it, or None at the first thing out of the ordinary, for
        ``_check`` to list every problem in its order."""
        raws = [_ABSENT] * len(self._inputs)
        given: dict[str, str] = {}
        for group, body in request.items():
            slots = self._slots.get(group)
            if slots is None or type(body) is not dict:
                return None
            for name, raw in body.items():
                slot = slots.get(name)
                if slot is None:
                    return None
                if type(slot) is int:
                    raws[slot] = raw
                elif raw is None:
                    continue
                elif slot == "order.currency":
                    if raw != self.currency:
                        return None
                elif type(raw) is str and 0 < len(raw) <= 200 and _clean_text(raw):
                    given[slot] = raw
                else:
                    return None
        values: dict[str, Any] = {}
        for spec, raw in zip(self._inputs, raws, strict=True):
            path, coerce_one, optional, default, _, _ = spec
            if raw is _ABSENT:
                if not optional:
                    return None
                values[path] = default
            elif raw is None:
                return None
            else:
                try:
                    values[path] = coerce_one(raw)
                except InputErrors:
                    return None
        return values, {path: given[path] for path in IDENTIFIERS if path in given}

    def _check(self, request: Any) -> tuple[dict[str, Any], dict[str, str]]:
        errors: list[InputError] = []
        if not isinstance(request, dict):
            raise InputErrors(
                [
                    InputError(
                        "",
                        "invalid_request",
                        "a request is a JSON object with groups such as 'order' and 'customer'",
                    )
                ]
            )
        flat: dict[str, Any] = {}
        groups = self.groups
        for group, body in request.items():
            if group not in groups:
                message = f"unknown group {group!r}; expected {self._expected}"
                errors.append(InputError(group, "unknown_field", message))
                continue
            if not isinstance(body, dict):
                errors.append(InputError(group, "invalid_type", f"{group!r} must be an object"))
                continue
            for name, value in body.items():
                flat[f"{group}.{name}"] = value
        identifiers: dict[str, str] = {}
        for path in IDENTIFIERS:
            if path in flat:
                v = flat.pop(path)
                if v is None:
                    continue
                if not isinstance(v, str) or not 0 < len(v) <= 200 or not _clean_text(v):
                    errors.append(
                        InputError(
                            path,
                            "invalid_type",
                            "an identifier is text of 1 to 200 printable characters",
                        )
                    )
                else:
                    identifiers[path] = v
        if "order.currency" in flat:
            cur = flat.pop("order.currency")
            if cur is not None and cur != self.currency:
                errors.append(
                    InputError(
                        "order.currency",
                        "currency_mismatch",
                        f"this policy decides in {self.currency}, the order is in "
                        f"{cur!r}; convert it first",
                    )
                )
        values: dict[str, Any] = {}
        pop = flat.pop
        for path, coerce_one, optional, default, null_message, missing_message in self._inputs:
            raw = pop(path, _ABSENT)
            if raw is _ABSENT:
                if optional:
                    values[path] = default
                else:
                    errors.append(InputError(path, "missing", missing_message))
            elif raw is None:
                # null is not "use the default": an ERP sending null for "unknown blacklist
                # status" must not get "not blacklisted" (fail closed).
                errors.append(InputError(path, "null_value", null_message))
            else:
                try:
                    values[path] = coerce_one(raw)
                except InputErrors as exc:
                    errors.extend(exc.errors)
        errors += [self._unknown(path) for path in flat]
        if errors:
            raise InputErrors(errors)
        return values, identifiers


def validate_request(policy: Policy, request: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Check ``request`` against ``policy.inputs``.

    Returns ``(values, identifiers)``: ``values`` maps every declared input path to a typed
    value (``Decimal`` for money/decimal, ``int``, ``bool``, ``str``), defaults filled in, in
    the policy's input order; ``identifiers`` holds ``order.id``/``customer.id`` when given.
    Raises ``InputErrors`` listing every problem: unknown or malformed groups (request
    order), bad identifiers, a currency mismatch, each input's problem (policy order), then
    unknown fields (request order).

    Compiles a ``RequestValidator`` on every call; ``engine.evaluate`` runs the one compiled
    with the policy (``CompiledPolicy.validate``)."""
    return RequestValidator(policy)(request)


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters, for messages about untrusted input."""
    text = repr(value[:limit] if isinstance(value, str | bytes) else value)
    return text if len(text) <= limit and not (
        isinstance(value, str | bytes) and len(value) > limit
    ) else text[: limit - 3] + "..."


def _clean_text(text: str) -> bool:
    """True for text without control characters (C0, DEL, C1) that encodes as UTF-8 (no
    lone surrogates), so it can be stored, printed and compared safely."""
    if _CONTROL.search(text):
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


MAX_REQUEST_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32


MAX_JSON_CONTAINERS = 10_000  # arrays and objects in one body
MAX_JSON_VALUES = 20_000  # values in its arrays and objects together (their commas)
_BRACKETS = bytes(range(256)).translate(None, b"[]{},")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_TOO_MANY_OPEN = b"[" * (MAX_JSON_DEPTH + 1)


def _structure_problem(data: bytes) -> str | None:
    """What is wrong with the shape of JSON ``data`` before it is parsed, or None: nesting
    deeper than ``MAX_JSON_DEPTH``, more than ``MAX_JSON_CONTAINERS`` arrays and objects
    or more than ``MAX_JSON_VALUES`` values. Decided with ``bytes`` operations that run in
    C, so even a 1 MB body of junk costs the event loop a few milliseconds (a Python loop
    over its characters took 125 ms, and parsing 330,000 empty arrays 100 ms).

    Escaped backslashes and quotes are removed, then the strings (every other piece
    between quotes), then all but brackets and commas (``{}`` counted as ``[]``). More than
    ``MAX_JSON_DEPTH`` opening brackets in a row is too deep; otherwise each pass removes
    the innermost level (``[]``: a bracket closed right away; ``bytes.replace`` does not
    match across what it removed, so exactly one level), and a pair still there after
    ``MAX_JSON_DEPTH`` passes sits deeper. Brackets that never close (invalid JSON) count
    only in a run of openers; the parser reports the rest with its position."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH and data.count(b",") <= 32:
        return None  # the usual small request: nothing to count
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    if data.count(b'"') > 4 * (MAX_JSON_VALUES + MAX_JSON_CONTAINERS) + 2:
        # each string is a value or a member's name: this many strings cannot fit in
        # the values and containers allowed (and splitting them all would cost time)
        return (f"more than {MAX_JSON_VALUES:,} values or {MAX_JSON_CONTAINERS:,} arrays and "
                "objects")
    shape = b"".join(data.split(b'"')[::2]).translate(_ONE_KIND, _BRACKETS)
    if shape.count(b",") >= MAX_JSON_VALUES:
        return f"more than {MAX_JSON_VALUES:,} values in its arrays and objects"
    brackets = shape.replace(b",", b"")
    opened = brackets.count(b"[")
    if opened > MAX_JSON_CONTAINERS:
        return f"more than {MAX_JSON_CONTAINERS:,} arrays and objects"
    if opened <= MAX_JSON_DEPTH:
        return None
    too_deep = f"nested deeper than {MAX_JSON_DEPTH} levels"
    for _ in range(MAX_JSON_DEPTH):
        if _TOO_MANY_OPEN in brackets:
            return too_deep
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            return None  # nothing nests any more (empty, or brackets that never close)
        brackets = inner
    return too_deep if b"[]" in brackets else None


def parse_request_json(data: bytes | str, source: str = "request") -> Any:
    """Parse request JSON exactly and strictly; raise ``InputErrors`` (code ``invalid_json``)
    with the position for anything else.

    - numbers with a fraction become ``Decimal`` (never binary floats);
    - ``NaN``/``Infinity``, duplicate keys, nesting deeper than 32 levels, more than
      10,000 arrays and objects or 20,000 values in them, more than 1 MiB and non-UTF-8
      bytes are errors (the shape is checked before parsing: ``_structure_problem``).
    """
    import json

    def fail(msg: str) -> InputErrors:
        return InputErrors([InputError("", "invalid_json", f"{source}: {msg}")])

    if isinstance(data, bytes):
        if len(data) > MAX_REQUEST_BYTES:
            raise fail(f"larger than {MAX_REQUEST_BYTES} bytes")
        raw = data
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fail(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    elif len(data) > MAX_REQUEST_BYTES:
        raise fail(f"larger than {MAX_REQUEST_BYTES} bytes")
    else:
        raw = data.encode("utf-8", "surrogatepass")
    problem = _structure_problem(raw)  # before the recursive parser can overflow
    if problem is not None:
        raise fail(problem)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"duplicate key {_short(key)}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number")

    try:
        return json.loads(
            data, parse_float=Decimal, parse_constant=constant, object_pairs_hook=pairs
        )
    except json.JSONDecodeError as exc:
        raise fail(f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise fail(str(exc)) from None


def coerce(spec: InputDef, raw: Any, minor_units: int) -> Any:
    """Convert one raw JSON value to the type of ``spec``; raises ``InputErrors``. One-off
    form of ``coercer(spec, minor_units)(raw)``."""
    return coercer(spec, minor_units)(raw)


def coercer(spec: InputDef, minor_units: int) -> Callable[[Any], Any]:
    """The check and conversion of one declared input as a closure, made once per policy.

    The closure takes the raw JSON value (never ``None``: absence and null are the caller's)
    and returns the typed value: ``bool``; ``str`` for enum and string; ``int`` for int;
    ``Decimal`` for decimal (the digits as sent, ``-0`` made ``0``) and money (quantized to
    the currency's ``minor_units`` decimals). It raises ``InputErrors`` with one
    ``InputError`` at ``spec.path``: ``invalid_type``, ``inexact_number`` (a binary float),
    ``invalid_value`` (not an enum value, not finite, control characters), ``too_long``
    (text over 1000 characters), ``out_of_range`` (magnitude at or beyond 10**15 for money
    and int, 10**12 for decimal), ``too_many_decimals``, ``below_min``, ``above_max``
    (bounds are inclusive)."""
    t: Type = spec.type
    path = spec.path

    def fail(code: str, msg: str) -> InputErrors:
        return InputErrors([InputError(path, code, msg)])

    if t.kind == "bool":

        def boolean(raw: Any) -> bool:
            if not isinstance(raw, bool):
                raise fail("invalid_type", f"expected true or false, got {_short(raw)}")
            return raw

        return boolean
    if t.kind == "enum":
        allowed = t.values

        def enum(raw: Any) -> str:
            if not isinstance(raw, str):
                raise fail("invalid_type", f"expected text, got {_short(raw)}")
            if raw not in allowed:
                raise fail("invalid_value", f"{_short(raw)} is not one of {list(allowed)}")
            # an allowed value is a name of 1 to 64 letters, digits and _ . + -
            # (rules.expr.parse_type): never too long, never a control character
            return raw

        return enum
    if t.kind == "string":

        def text(raw: Any) -> str:
            if not isinstance(raw, str):
                raise fail("invalid_type", f"expected text, got {_short(raw)}")
            if len(raw) > 1000:
                raise fail("too_long", "text longer than 1000 characters")
            if not _clean_text(raw):
                raise fail("invalid_value", "text with control characters or invalid Unicode")
            return raw

        return text
    return _number(spec, minor_units, fail)


def _number(
    spec: InputDef, minor_units: int, fail: Callable[[str, str], InputErrors]
) -> Callable[[Any], Any]:
    """``coercer`` for a money, int or decimal input (see there)."""
    kind = spec.type.kind
    if kind == "money":
        limit, places, unit = MAX_MONEY, minor_units, "the currency's minor unit"
    elif kind == "int":
        limit, places, unit = Decimal(MAX_INT), 0, "whole numbers"
    else:
        limit, places, unit = MAX_DECIMAL, DECIMAL_PLACES, f"{DECIMAL_PLACES} decimal places"
    below = -limit
    beyond = f"is beyond the supported range (±{limit:,})"
    too_many = f"has more decimals than allowed ({unit})"
    lo, hi = spec.min, spec.max
    unit_of_places = Decimal(1).scaleb(-places)  # money: the minor unit (0.01 for EUR)

    def to_decimal(raw: Any) -> Decimal:
        if isinstance(raw, bool):
            raise fail("invalid_type", f"expected a number, got {_short(raw)}")
        if isinstance(raw, float):
            raise fail(
                "inexact_number",
                "binary floating point is not exact: send the number as "
                'a string ("10000.10") or parse JSON with exact decimals',
            )
        if isinstance(raw, int):
            return Decimal(raw)
        if isinstance(raw, Decimal):
            return raw
        if isinstance(raw, str) and len(raw) <= 40 and _NUMBER.fullmatch(raw):
            try:
                return Decimal(raw)
            except InvalidOperation:  # pragma: no cover - regex guards it
                raise fail("invalid_type", f"not a number: {_short(raw)}") from None
        raise fail("invalid_type", f"expected a number, got {_short(raw)}")

    def number(raw: Any) -> Any:
        cls = type(raw)  # the usual exact types first; anything else in the order above
        if cls is str and len(raw) <= 40 and _NUMBER.fullmatch(raw):
            value = Decimal(raw)
        elif cls is Decimal:
            value = raw
        elif cls is int:
            value = Decimal(raw)
        else:
            value = to_decimal(raw)
        if not value.is_finite():
            raise fail("invalid_value", "number is not finite")
        if not below < value < limit:
            raise fail("out_of_range", f"{value} {beyond}")
        rounded = value.quantize(unit_of_places)  # what round(value, places) gives
        if value != rounded:
            raise fail("too_many_decimals", f"{value} {too_many}")
        if lo is not None and value < lo:
            raise fail("below_min", f"{value} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise fail("above_max", f"{value} is above the maximum {hi}")
        if kind == "int":
            return int(value)
        if kind == "money":
            return rounded + 0  # quantized to the minor unit; -0.00 -> 0.00
        return value + 0  # turns -0 into 0; keeps the digits as sent

    return number
