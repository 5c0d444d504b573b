"""Errors of the customers."""

from __future__ import annotations

from typing import Any

__all__ = ["ImportErrors", "PreconditionFailed", "UnknownCustomer"]


class UnknownCustomer(Exception):
    """No such customer in the ledger."""

    def __init__(self, customer_id: str):
        super().__init__(f"unknown customer {customer_id!r}")
        self.customer_id = customer_id


class ImportErrors(ValueError):
    """A customer import refused as a whole: ``errors`` = [{line, column, problem}]."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__(f"{len(errors)} bad row(s); nothing was imported")
        self.errors = errors


class PreconditionFailed(Exception):
    """An ``If-Match`` / ``If-None-Match`` condition does not hold for the stored customer
    (checked under its row lock): nothing was written (HTTP 412 ``precondition_failed``)."""
