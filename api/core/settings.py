"""Service settings (pydantic-settings).

Environment: ``CREDITGATE_DATABASE_URL`` (or plain ``DATABASE_URL``), ``CREDITGATE_POLICY_PATH``,
``CREDITGATE_MAX_REQUEST_BYTES``, ``CREDITGATE_MAX_ORDER_AGE_DAYS`` (days, default 7),
``CREDITGATE_MAX_RATE_AGE_DAYS`` (days, default 7), ``CREDITGATE_MODE`` (``production``,
the default, ``development`` or ``test``) and ``CREDITGATE_CLOCK`` (a fixed or moved clock,
``api.core.clock``; refused in production mode). PostgreSQL URLs given as ``postgres://`` or
``postgresql://`` are rewritten to the psycopg 3 driver (``postgresql+psycopg://``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "normalise_database_url"]

if TYPE_CHECKING:
    from api.core.clock import Clock


def normalise_database_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` → ``postgresql+psycopg://``; anything else as is."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITGATE_", populate_by_name=True)

    database_url: str = Field(
        default="sqlite:///creditgate.db",
        validation_alias=AliasChoices("CREDITGATE_DATABASE_URL", "DATABASE_URL"),
    )
    policy_path: str = "policies.yaml"
    max_request_bytes: int = 1024 * 1024
    max_order_age_days: int = Field(
        default=7,
        ge=0,
        description="Days: the oldest order_date POST /v1/decisions accepts is today (UTC) "
        "minus this; a later one than today is always refused",
    )
    max_rate_age_days: int = Field(
        default=7,
        ge=0,
        description="Days: an exchange rate more than this older than the order date is "
        "stale (fx_rate_missing), never used",
    )

    mode: Literal["production", "development", "test"] = Field(
        default="production",
        description="production refuses a moved clock; development and test accept one",
    )
    clock: str | None = Field(
        default=None,
        description="A fixed or moved clock for tests and rehearsals: 2026-11-29T10:00:00Z "
        "(frozen), start=2026-11-29T10:00:00Z (ticking from there) or +365d / -2h (offset); "
        "noted on every record; only in mode development or test",
    )

    @model_validator(mode="after")
    def _clock_only_outside_production(self) -> Settings:
        from api.core.clock import Clock

        if self.clock and self.clock.strip():
            if self.mode == "production":
                raise ValueError(
                    "CREDITGATE_CLOCK is refused in production mode: a decision must carry the "
                    "real time; set CREDITGATE_MODE=test or development to move the clock"
                )
            Clock.from_setting(self.clock)  # ClockSettingError (a ValueError) if malformed
        return self

    def make_clock(self) -> Clock:
        """The service's clock (``api.core.clock``): the system clock unless ``clock`` is set."""
        from api.core.clock import Clock

        return Clock.from_setting(self.clock)

    @field_validator("database_url")
    @classmethod
    def _driver(cls, v: str) -> str:
        return normalise_database_url(v)
