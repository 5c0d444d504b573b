"""The answer of ``GET /v1/policy``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.core.schemas import Sha256Hex


class PolicyInForce(BaseModel):
    """The policy the service decides under."""

    model_config = ConfigDict(extra="allow")

    id: str
    version: str
    sha256: Sha256Hex = Field(description="sha256 of the policy text")
    currency: str = Field(description="ISO 4217: every amount of the policy and the ledger")
    rules: int = Field(description="How many rules the policy compiles to")
    description: str
