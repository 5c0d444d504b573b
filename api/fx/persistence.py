"""Exchange rates: load them (``FxRates.put_rates``), look them up, and convert an order's
amount into the policy currency inside the decision's transaction (``convert``)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlmodel import Session, col, select

from api.core.database import Database
from api.core.types import DEFAULT_UNIT
from api.core.values import currency_code, plain
from api.fx.exceptions import FxRateMissing
from api.fx.tables import FxRate

__all__ = ["FxRates", "convert", "latest_rate"]


class FxRates:
    """The exchange rates of one database."""

    def __init__(self, db: Database):
        self.db = db

    def put_rates(self, base: str, rates: list[dict[str, Any]]) -> int:
        """Insert or replace rates ``[{currency, rate, as_of}]`` against ``base`` (one
        transaction). ``rate`` = units of ``base`` for one unit of ``currency``, > 0, at
        most 10 decimals. Returns how many were written."""
        base = currency_code(base, "base")
        clean = []
        for i, r in enumerate(rates):
            cur = currency_code(r.get("currency"), f"rates[{i}].currency")
            if cur == base:
                raise ValueError(f"rates[{i}].currency: same as the base {base}")
            rate = r.get("rate")
            if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
                raise ValueError(f"rates[{i}].rate: a positive exact decimal")
            if rate != rate.quantize(Decimal("1E-10")) or rate >= Decimal(10) ** 9:
                raise ValueError(f"rates[{i}].rate: at most 10 decimals, below 10^9")
            as_of = r.get("as_of")
            if not isinstance(as_of, date) or isinstance(as_of, datetime):
                raise ValueError(f"rates[{i}].as_of: a date")
            clean.append((cur, rate, as_of))
        unit, now = self.db.unit, self.db.clock.now()
        with self.db.session(write=True) as s:
            for cur, rate, as_of in clean:
                row = s.get(FxRate, (unit, base, cur, as_of), with_for_update=True)
                if row is None:
                    s.add(
                        FxRate(
                            business_unit=unit,
                            base=base,
                            currency=cur,
                            as_of=as_of,
                            rate=rate,
                            updated_at=now,
                        )
                    )
                else:
                    row.rate, row.updated_at = rate, now
        return len(clean)

    def has_rates(self, base: str, currency: str) -> bool:
        """Whether any rate of ``currency`` against ``base`` is loaded (whatever its date)."""
        with self.db.session(write=False) as s:
            return (
                s.exec(
                    select(FxRate.as_of)
                    .where(
                        FxRate.business_unit == self.db.unit,
                        FxRate.base == base,
                        FxRate.currency == currency,
                    )
                    .limit(1)
                ).first()
                is not None
            )

    def rate(self, base: str, currency: str, on: date) -> tuple[Decimal, date] | None:
        """The latest rate on or before ``on``: ``(rate, as_of)`` or None."""
        with self.db.session(write=False) as s:
            row = latest_rate(s, base, currency, on, unit=self.db.unit)
            return (row.rate, row.as_of) if row else None


def latest_rate(
    s: Session, base: str, currency: str, on: date, *, unit: str = DEFAULT_UNIT
) -> FxRate | None:
    """The latest rate of ``currency`` against ``base`` on or before ``on`` in business unit
    ``unit``, or None."""
    return s.exec(
        select(FxRate)
        .where(
            FxRate.business_unit == unit,
            FxRate.base == base,
            FxRate.currency == currency,
            col(FxRate.as_of) <= on,
        )
        .order_by(col(FxRate.as_of).desc())
        .limit(1)
    ).first()


def convert(
    s: Session,
    norm: dict[str, Any],
    base: str,
    minor_units: int,
    on: date,
    max_age_days: int | None = None,
    *,
    latest: date | None = None,
    unit: str = DEFAULT_UNIT,
) -> dict[str, Any]:
    """Convert the order's amount into ``base``. The rate is the latest on or before
    the order date ``on`` (missing, or more than ``max_age_days`` older than ``on`` →
    ``FxRateMissing``); with ``latest`` (today), the latest rate on or before that day
    must not be more than ``max_age_days`` old either (``FxRateMissing``: a stopped
    feed is not hidden by backdating), and the HIGHER of the two is used: the larger
    exposure, so a caller cannot lower an order's value by choosing its date
    (conservative; both rates are recorded in ``candidates``)."""
    row = latest_rate(s, base, norm["currency"], on, unit=unit)
    if row is None:
        raise FxRateMissing(base, norm["currency"], on)
    if max_age_days is not None and (on - row.as_of).days > max_age_days:
        raise FxRateMissing(base, norm["currency"], on, stale=row.as_of, max_age=max_age_days)
    rows = [row]
    if latest is not None:
        now_row = latest_rate(s, base, norm["currency"], latest, unit=unit) if latest > on else row
        assert now_row is not None  # row is on or before on <= latest
        if max_age_days is not None and (latest - now_row.as_of).days > max_age_days:
            # The feed stopped: even the newest rate is stale TODAY, so a backdated
            # order may not use it either (the currency may have risen since).
            raise FxRateMissing(
                base, norm["currency"], latest, stale=now_row.as_of, max_age=max_age_days
            )
        if now_row.as_of != row.as_of:
            rows.append(now_row)
    used = max(rows, key=lambda r: (r.rate, r.as_of))
    candidates = [{"rate": plain(r.rate), "as_of": r.as_of.isoformat()} for r in rows]
    row = used
    unit = Decimal(1).scaleb(-minor_units)
    converted = (norm["amount"] * row.rate).quantize(unit, rounding=ROUND_HALF_EVEN)
    if converted <= 0:
        raise ValueError(f"amount: {norm['amount']} {norm['currency']} converts to 0 {base}")
    return {
        "original_amount": plain(norm["amount"]),
        "original_currency": norm["currency"],
        "currency": base,
        "rate": plain(row.rate),
        "rate_as_of": row.as_of.isoformat(),
        "order_date": on.isoformat(),
        "rounding": f"half-even to {plain(unit)}",
        **({"candidates": candidates} if len(candidates) > 1 else {}),
        "converted_amount": converted,
    }
