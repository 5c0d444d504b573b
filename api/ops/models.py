"""The answers of the operations routes (``/healthz``, ``/readyz``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from api.core.schemas import Sha256Hex


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["ok"]


class PolicyLoaded(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    version: str
    sha256: Sha256Hex


class Readiness(BaseModel):
    """The database answers and the policy is loaded."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ready"]
    policy: PolicyLoaded
