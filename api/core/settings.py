"""Service settings (pydantic-settings).

Environment: ``CREDITGATE_DATABASE_URL`` (or plain ``DATABASE_URL``), ``CREDITGATE_POLICY_PATH``,
``CREDITGATE_MAX_REQUEST_BYTES``, ``CREDITGATE_MAX_ORDER_AGE_DAYS`` (days, default 7),
``CREDITGATE_MAX_RATE_AGE_DAYS`` (days, default 7). PostgreSQL URLs given as ``postgres://`` or
``postgresql://`` are rewritten to the psycopg 3 driver (``postgresql+psycopg://``).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "normalise_database_url"]


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

    @field_validator("database_url")
    @classmethod
    def _driver(cls, v: str) -> str:
        return normalise_database_url(v)
