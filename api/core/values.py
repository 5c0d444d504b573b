"""Value checks of the persistence layer (the last line of defence behind the request
models): exact money, identifiers, currency codes. Each raises ``ValueError`` whose message
starts with the field (``amount: ...``), which the routes turn into a 422 at that path."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from api.core import chain

__all__ = [
    "currency_code",
    "currency_places",
    "customer_identifier",
    "identifier",
    "money",
    "plain",
]


def plain(d: Decimal) -> str:
    """A Decimal as plain text without exponent (``Decimal("1E+2")`` → ``"100"``)."""
    return chain.decimal_str(d)


def money(value: Any, what: str, places: int = 2, currency: str = "") -> Decimal:
    """``value`` as an exact Decimal with ``places`` decimals (the minor unit of its
    currency: EUR 2, JPY 0, KWD 3); messages show the number as sent, never a repr."""
    if isinstance(value, float) or isinstance(value, bool):
        raise ValueError(f"{what}: send money as a string or Decimal, not {type(value).__name__}")
    try:
        d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what}: {str(value)[:40]!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{what}: {value} is not a finite number")
    unit = Decimal(1).scaleb(-places)
    if abs(d) >= Decimal(10) ** 15:
        raise ValueError(f"{what}: {plain(d)} is too large (at most 15 digits before the point)")
    if d.quantize(unit) != d:
        where = f" ({currency})" if currency else ""
        raise ValueError(
            f"{what}: {plain(d)} has more than {places} decimal{'s' if places != 1 else ''}{where}"
        )
    return d.quantize(unit)


def currency_places(currency: str) -> int:
    """Decimals of ``currency`` (ISO 4217 minor unit from Babel/CLDR), at most 4."""
    from babel.numbers import get_currency_precision

    return min(get_currency_precision(currency), 4)


def identifier(value: Any, what: str) -> str:
    """An order, event or customer id: 1 to 200 printable characters, no surrounding
    whitespace."""
    if not isinstance(value, str) or not 0 < len(value) <= 200 or not value.isprintable():
        raise ValueError(f"{what}: an identifier is text of 1 to 200 printable characters")
    if value != value.strip():
        raise ValueError(f"{what}: an identifier may not begin or end with spaces")
    return value


def customer_identifier(value: Any, what: str = "customer_id") -> str:
    """A customer id is also one URL path segment (``/v1/customers/<id>``)."""
    cid = identifier(value, what)
    if any(c in cid for c in "/?#%\\") or cid in (".", ".."):
        raise ValueError(
            f"{what}: a customer id is one URL path segment: it may not contain / ? # % or \\ "
            "nor be . or .."
        )
    return cid


def currency_code(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha() or not value.isupper():
        raise ValueError(f"{what}: an ISO 4217 code such as 'EUR'")
    return value
