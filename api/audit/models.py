"""The answer of ``GET /v1/audit/verify`` (``api.audit.persistence.Audit.verify_chain``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.core.schemas import Sha256Hex


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChainReport(_Answer):
    """One hash chain walked up to its stored head."""

    ok: bool
    checked: int = Field(description="Records found intact")
    first_broken_seq: int | None = Field(description="The first broken or missing record")
    reason: str | None = Field(description="Why it is broken; null when intact")
    head_seq: int | None = Field(description="The stored head (anchor it outside the database)")
    head_hash: Sha256Hex | None
    moved_clock: int = Field(
        description="Records written under a moved clock (CREDITGATE_CLOCK, test or "
        "development mode): test data, never real decisions"
    )


class ConsistencyProblem(_Answer):
    """A state the chains do not cover that disagrees with itself."""

    check: Literal[
        "open_orders", "policy_source", "policy_missing", "reservations", "decisions_missing"
    ]
    message: str
    customer_id: str | None = Field(
        default=None,
        description="open_orders, reservations, decisions_missing: the customer",
    )
    sha256: str = Field(
        default=None,  # type: ignore[assignment]
        description="policy_source, policy_missing: the policy text's sha256",
    )
    order_id: str = Field(
        default=None,  # type: ignore[assignment]
        description="reservations: the order",
    )


class Consistency(_Answer):
    ok: bool
    customers: int = Field(description="Customers checked")
    policy_versions: int = Field(description="Stored policy texts checked")
    problems: list[ConsistencyProblem] = Field(description="The first 100 problems")
    problems_total: int


class AuditReport(ChainReport):
    """The hash chains and the ledger's consistency: the top-level chain fields are the
    decision log's, ``ledger`` the ledger events', ``customer_history`` the changes of the
    customers' master data; ``ok`` only if all of them are."""

    ledger: ChainReport
    customer_history: ChainReport
    consistency: Consistency
