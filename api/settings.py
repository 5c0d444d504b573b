"""Service settings (pydantic-settings).

Environment: ``CREDITGATE_DATABASE_URL`` (or plain ``DATABASE_URL``), ``CREDITGATE_POLICY_PATH``,
``CREDITGATE_MAX_REQUEST_BYTES``. PostgreSQL URLs given as ``postgres://`` or
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

    @field_validator("database_url")
    @classmethod
    def _driver(cls, v: str) -> str:
        return normalise_database_url(v)
