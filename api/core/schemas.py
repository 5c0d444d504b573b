"""The contract's shared pieces: the JSON schemas of the request fields (what the value
parsers of ``api.core.bodies`` accept, written as patterns, lengths, enums and bounds) and
the field types of the response models.

Request fields are validated by the parsers (``parse_money``, ``parse_identifier``, ...),
whose error codes and messages the API keeps; their schemas here describe exactly what those
parsers accept, so a client generator and a schema-based tester (schemathesis) see the
server's real constraints. The patterns use only what Python's ``re``, ECMA-262 and Rust's
``regex`` read alike (character classes with ``\\xNN``/``\\uNNNN`` escapes, no look-around):
``tests/core/test_contract.py`` checks each pattern against its parser character by
character.

Response fields are JSON text where the service writes text: money and decimals as exact
decimal strings (``"12500.00"``), datetimes as RFC 3339 strings, hashes as 64 hex digits. In
the reads of the decision log, masked values are the literal ``"***"`` (``MASK``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import WithJsonSchema

__all__ = [
    "CURRENCY_SCHEMA",
    "CUSTOMER_ID_PATTERN",
    "CUSTOMER_ID_SCHEMA",
    "DATE_OR_DATETIME_PATTERN",
    "DATE_SCHEMA",
    "DECIMAL_PATTERN",
    "IDENTIFIER_PATTERN",
    "NO_NUL_PATTERN",
    "IDENTIFIER_SCHEMA",
    "MASK",
    "MONEY_SCHEMA",
    "NON_NEGATIVE_MONEY_SCHEMA",
    "POSITIVE_MONEY_SCHEMA",
    "RATE_SCHEMA",
    "WHOLE_SCHEMA",
    "DateText",
    "DateTimeText",
    "DecimalText",
    "Masked",
    "Sha256Hex",
    "currency_codes",
]

# -- identifiers --------------------------------------------------------------------------
# Control characters (C0, DEL, C1) are never allowed; whitespace (what Python's str.strip()
# removes) is not allowed at either end.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_SPACE_OR_CONTROL = (
    r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
_URL_UNSAFE = r"/?#%\\"

#: a free-text query value (a filter): anything but NUL, which is refused before routing
#: (400 ``bad_request``: PostgreSQL cannot compare a NUL in text)
NO_NUL_PATTERN = r"^[^\x00]*$"

#: an order, event or customer id: 1 to 200 printable characters, no space at either end
IDENTIFIER_PATTERN = rf"^[^{_SPACE_OR_CONTROL}](?:[^{_CONTROL}]{{0,198}}[^{_SPACE_OR_CONTROL}])?$"

_CE, _CI = _SPACE_OR_CONTROL + _URL_UNSAFE, _CONTROL + _URL_UNSAFE
#: a customer id: an identifier that is one URL path segment (no / ? # % \, not . or ..)
CUSTOMER_ID_PATTERN = (
    rf"^(?:[^{_CE}.]|[^{_CE}.][^{_CE}]|\.[^{_CE}.]|[^{_CE}][^{_CI}]{{1,198}}[^{_CE}])$"
)

IDENTIFIER_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": IDENTIFIER_PATTERN,
    "description": "1 to 200 printable characters (no control characters), not beginning "
    "or ending with whitespace",
}
CUSTOMER_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": CUSTOMER_ID_PATTERN,
    "description": "An identifier that is one URL path segment: no `/ ? # % \\`, not `.` "
    "or `..`",
}

# -- numbers ------------------------------------------------------------------------------
_BELOW_1E15 = r"0*[0-9]{1,15}"  # an integer part below 10^15, leading zeros allowed
_MAX_MONEY = 10**15 - 1

#: money as the API reads it: a decimal string (sign, integer part below 10^15, any
#: fraction; at most 40 characters) or a whole JSON number. The decimals a currency allows
#: (EUR 2, JPY 0) are checked by the server (422 ``too_many_decimals``).
MONEY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            "maxLength": 40,
            "pattern": rf"^[+-]?(?:{_BELOW_1E15}(?:\.[0-9]*)?|\.[0-9]+)$",
        },
        {"type": "integer", "minimum": -_MAX_MONEY, "maximum": _MAX_MONEY},
    ],
    "description": 'A decimal string such as "12500.00" (or a whole number), below 10^15 '
    "in magnitude; never a JSON number with a fraction (inexact_number)",
}
#: money that may not be negative (credit limit, open receivables); -0 is zero
NON_NEGATIVE_MONEY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            "maxLength": 40,
            "pattern": rf"^(?:\+?(?:{_BELOW_1E15}(?:\.[0-9]*)?|\.[0-9]+)|-(?:0+(?:\.0*)?|\.0+))$",
        },
        {"type": "integer", "minimum": 0, "maximum": _MAX_MONEY},
    ],
    "description": 'A decimal string such as "50000.00" (or a whole number), 0 or more, '
    "below 10^15",
}
#: money above zero (a ledger event's amount: the type gives the direction)
POSITIVE_MONEY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            "maxLength": 40,
            "pattern": r"^\+?(?:0*[1-9][0-9]{0,14}(?:\.[0-9]*)?|0*\.0*[1-9][0-9]*)$",
        },
        {"type": "integer", "minimum": 1, "maximum": _MAX_MONEY},
    ],
    "description": 'A decimal string such as "1200.00" (or a whole number), above 0, '
    "below 10^15",
}

# An exchange rate: above 0, below 10^9, at most 10 decimals (further decimals only zeros).
_RATE_FRACTION = "|".join(f"0{{{k}}}[1-9][0-9]{{0,{9 - k}}}" for k in range(10))
RATE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            "maxLength": 40,
            "pattern": r"^\+?(?:0*[1-9][0-9]{0,8}(?:\.[0-9]{0,10}0*)?"
            rf"|0*\.(?:{_RATE_FRACTION})0*)$",
        },
        {"type": "integer", "minimum": 1, "maximum": 10**9 - 1},
    ],
    "description": 'A decimal string such as "0.92" (or a whole number): above 0, below '
    "10^9, at most 10 decimals",
}

#: a whole number as the API reads it (JSON integer, below 10^9 in magnitude)
WHOLE_SCHEMA: dict[str, Any] = {
    "type": "integer",
    "minimum": -(10**9 - 1),
    "maximum": 10**9 - 1,
}

# -- dates --------------------------------------------------------------------------------
# A calendar date of years 0001-9999 as Python's date.fromisoformat takes it (YYYY-MM-DD):
# months of 30 and 31 days, 28 days in February and the 29th in leap years.
_YEAR = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE_PATTERN_BODY = (
    rf"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    rf"|{_LEAP_YEAR}-02-29)"
)
_HOUR, _MINUTE = r"(?:[01][0-9]|2[0-3])", r"[0-5][0-9]"
#: a date, or a date and time (T, hours and minutes, optional seconds and fraction), with
#: an optional offset (none: UTC): the ``from`` / ``to`` of the decision log's reads
DATE_OR_DATETIME_PATTERN = (
    rf"^{DATE_PATTERN_BODY}(?:T{_HOUR}:{_MINUTE}(?::{_MINUTE}(?:\.[0-9]{{1,9}})?)?"
    rf"(?:Z|[+-]{_HOUR}:{_MINUTE})?)?$"
)
DATE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date",
    "pattern": rf"^{DATE_PATTERN_BODY}$",
    "description": "A calendar date, YYYY-MM-DD (ISO 8601)",
}


def currency_codes() -> list[str]:
    """The ISO 4217 codes the API accepts (Babel's list, as ``parse_currency`` checks)."""
    from babel.numbers import list_currencies

    return sorted(list_currencies())


#: the same, for membership tests (Babel builds its set anew on every call: 20 µs)
CURRENCY_CODES: frozenset[str] = frozenset(currency_codes())

CURRENCY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "enum": currency_codes(),
    "description": "ISO 4217 currency code",
}

# -- response field types -----------------------------------------------------------------
MASK = "***"


class Masked(StrEnum):
    """The value a masked field shows in the reads of the decision log: the literal
    ``"***"``. (An enum of one value, a component of its own, rather than a ``const``:
    client generators read a union with an enum correctly.)"""

    MASKED = MASK

#: an exact decimal as text (money, percentages, rates): ``"12500.00"``, ``"-5000.00"``
DECIMAL_PATTERN = r"^-?[0-9]+(?:\.[0-9]+)?$"
DecimalText = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "examples": ["5000.00"]})
]
DateTimeText = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
DateText = Annotated[str, WithJsonSchema({"type": "string", "format": "date"})]
Sha256Hex = Annotated[str, WithJsonSchema({"type": "string", "pattern": "^[0-9a-f]{64}$"})]
