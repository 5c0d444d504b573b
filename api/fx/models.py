"""Request models of the exchange rates (``PUT /v1/fx-rates``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from api.core.bodies import NUMBER, Body, Currency, IsoDate
from api.core.schemas import RATE_SCHEMA


def _rate_value(value: Any) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float | Decimal):
        raise PydanticCustomError(
            "inexact_number", 'a rate is a JSON string such as "0.9234" (or a whole number)'
        )
    if isinstance(value, int):
        rate = Decimal(value)
    elif isinstance(value, str) and len(value) <= 40 and NUMBER.fullmatch(value):
        rate = Decimal(value)
    else:
        raise PydanticCustomError("invalid_type", 'expected a rate as a string such as "0.9234"')
    if rate <= 0:
        raise PydanticCustomError("below_min", "a rate must be positive")
    # the magnitude first: quantizing 10**31 to 10 places exceeds the context (InvalidOperation)
    if rate >= Decimal(10) ** 9 or rate != rate.quantize(Decimal("1E-10")):
        raise PydanticCustomError("out_of_range", "at most 10 decimals and below 10^9")
    return rate + 0


RateValue = Annotated[Decimal, BeforeValidator(_rate_value), WithJsonSchema(RATE_SCHEMA)]


class FxRateItem(Body):
    currency: Currency
    rate: RateValue = Field(
        description="Units of `base` for ONE unit of `currency` on `as_of` "
        '(base EUR, currency USD, rate "0.92": 1 USD = 0.92 EUR)'
    )
    as_of: IsoDate = Field(description="Date of the rate, YYYY-MM-DD (ISO 8601)")


class FxRatesBody(Body):
    """Exchange rates into the policy's currency (``base``); inserted or replaced by
    (base, currency, as_of)."""

    base: Currency = Field(description="The policy currency")
    rates: list[FxRateItem] = Field(
        min_length=1,
        max_length=10000,
        description="One rate per currency and date (a duplicate: 422 duplicate_rate); "
        "`currency` other than `base`",
    )


class FxRatesResult(BaseModel):
    """The rates stored (inserted or replaced)."""

    model_config = ConfigDict(extra="allow")

    base: str
    stored: int
