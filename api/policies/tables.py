"""The table of policy texts: every policy version that made a decision, stored verbatim."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from api.core.types import timestamp_field, unit_field

__all__ = ["PolicyVersion"]


class PolicyVersion(SQLModel, table=True):
    __tablename__ = "policy_versions"

    business_unit: str = unit_field()
    sha256: str = Field(primary_key=True, max_length=64)
    policy_id: str = Field(max_length=200)
    version: str = Field(max_length=200)
    source: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    created_at: datetime = timestamp_field()
