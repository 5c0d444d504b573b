"""Errors of the ledger events."""

from __future__ import annotations

__all__ = ["EventConflict"]


class EventConflict(ValueError):
    """A ledger event that contradicts the ledger: event id reused with other content,
    no open reservation to cancel or invoice."""
