"""API keys: only the sha256 of each key is stored."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from api.core.types import timestamp_field, unit_field

__all__ = ["ApiKey"]


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    key_hash: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=32)
    name: str = Field(default="", max_length=200)
    created_at: datetime = timestamp_field()
    revoked: bool = Field(default=False)
    # The unit the key belongs to (revision 0005); keys are unique by their hash.
    business_unit: str = unit_field(primary_key=False)
