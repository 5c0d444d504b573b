"""The service's clock: every time the service reads or writes (a decision's
``evaluated_at``, ``created_at`` of log records and ledger events, "today" for order dates and
exchange rates, ``updated_at`` columns) comes from one ``Clock``, so tests and replays can move
it and records say when it was moved.

Kinds (``Clock.from_setting``, the ``CREDITGATE_CLOCK`` setting):

- system (no setting): ``datetime.now(UTC)``; ``note`` is None;
- fixed, a frozen instant: ``2026-11-29T10:00:00Z`` (a date alone is midnight UTC);
- started, ticking from an instant: ``start=2026-11-29T10:00:00Z`` (the offset to the
  system clock is fixed when the service starts);
- offset, the system clock moved by a duration: ``+365d``, ``-2h``, ``+1d12h30m``
  (units ``w d h m s``).

Any clock but the system's is refused in production mode (``CREDITGATE_MODE``, see
``api.core.settings``) and is noted on every record the service writes (``note``, e.g.
``offset +365d``), so a decision made under a moved clock can never pass for a real one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

__all__ = ["Clock", "ClockSettingError"]

_DURATION = re.compile(
    r"^(?P<sign>[+-])(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?"
    r"(?:(?P<s>\d+)s)?$"
)


class ClockSettingError(ValueError):
    """A clock setting that is not one of the forms ``Clock.from_setting`` reads."""


def _instant(text: str) -> datetime:
    """An ISO 8601 date-time with an offset (``Z`` allowed), or a date (midnight UTC)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ClockSettingError(
            f"{text!r} is not a date-time such as 2026-11-29T10:00:00Z or a date"
        ) from None
    if when.tzinfo is None:
        raise ClockSettingError(f"{text!r} has no UTC offset: write 2026-11-29T10:00:00Z")
    return when.astimezone(UTC)


def _duration_text(delta: timedelta) -> str:
    sign = "-" if delta < timedelta(0) else "+"
    seconds = int(abs(delta).total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return sign + ("".join(parts) or "0s")


class Clock:
    """A time source: ``now()`` (aware, UTC) and ``today()`` (the UTC date); calling the
    clock is ``now()``, so it can be passed wherever a ``() -> datetime`` is expected.
    ``note`` is None for the system clock, else the words every record notes."""

    def __init__(self, now: Callable[[], datetime] | None = None, note: str | None = None):
        self._now = now
        self.note = note if now is not None else None

    @classmethod
    def system(cls) -> Clock:
        return cls()

    @classmethod
    def fixed(cls, at: datetime) -> Clock:
        at = at.astimezone(UTC)
        return cls(lambda: at, f"fixed {at.isoformat()}")

    @classmethod
    def offset(cls, delta: timedelta) -> Clock:
        return cls(lambda: datetime.now(UTC) + delta, f"offset {_duration_text(delta)}")

    @classmethod
    def started(cls, at: datetime) -> Clock:
        at = at.astimezone(UTC)
        delta = at - datetime.now(UTC)
        return cls(lambda: datetime.now(UTC) + delta, f"started {at.isoformat()}")

    @classmethod
    def from_setting(cls, value: str | None) -> Clock:
        """The clock of a ``CREDITGATE_CLOCK`` value (see the module docstring); None or
        empty: the system clock. Raises ``ClockSettingError``."""
        text = (value or "").strip()
        if not text:
            return cls.system()
        m = _DURATION.fullmatch(text)
        if m and any(m.group(u) for u in "wdhms"):
            n = {u: int(m.group(u) or 0) for u in "wdhms"}
            delta = timedelta(
                weeks=n["w"], days=n["d"], hours=n["h"], minutes=n["m"], seconds=n["s"]
            )
            return cls.offset(-delta if m.group("sign") == "-" else delta)
        if text.startswith("start="):
            return cls.started(_instant(text.removeprefix("start=")))
        if text[:1] in "+-":
            raise ClockSettingError(
                f"{text!r} is not a duration such as +365d, -2h or +1d12h30m (units w d h m s)"
            )
        return cls.fixed(_instant(text))

    @classmethod
    def of(cls, clock: Clock | Callable[[], datetime] | None) -> Clock:
        """``clock`` as a ``Clock``: None → the system clock; a plain callable (tests) →
        a clock noted ``injected``."""
        if clock is None:
            return cls.system()
        if isinstance(clock, Clock):
            return clock
        return cls(lambda: _aware(clock()), "injected")

    def now(self) -> datetime:
        return datetime.now(UTC) if self._now is None else self._now()

    def today(self) -> date:
        return self.now().date()

    def __call__(self) -> datetime:
        return self.now()

    def __repr__(self) -> str:
        return f"Clock({self.note or 'system'})"


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
