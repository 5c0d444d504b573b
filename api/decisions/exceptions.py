"""Errors of deciding an order."""

from __future__ import annotations

__all__ = ["OrderConflict"]


class OrderConflict(ValueError):
    """The order id is already used for another customer (or the order can no longer be
    amended: it was cancelled or invoiced)."""
