"""Errors of the exchange rates."""

from __future__ import annotations

from datetime import date

__all__ = ["FxRateMissing"]


class FxRateMissing(ValueError):
    """No exchange rate on or before the order date: never converted 1:1."""

    def __init__(
        self, base: str, currency: str, on: date, stale: date | None = None, max_age: int = 0
    ):
        if stale is None:
            message = (
                f"currency: no {currency}->{base} exchange rate on or before {on.isoformat()}; "
                "load it with PUT /v1/fx-rates"
            )
        else:
            message = (
                f"currency: the latest {currency}->{base} exchange rate on or before "
                f"{on.isoformat()} is of {stale.isoformat()}, more than {max_age} days "
                "older than the order date; load a current rate with PUT /v1/fx-rates"
            )
        super().__init__(message)
        self.base, self.currency, self.on, self.stale = base, currency, on, stale
