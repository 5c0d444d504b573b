"""Errors of the API keys."""

from __future__ import annotations

__all__ = ["AmbiguousKey", "UnknownKey"]


class UnknownKey(LookupError):
    """No API key has this id (or the id is not a hex prefix)."""


class AmbiguousKey(LookupError):
    """Several API keys start with this id prefix; nothing was changed."""
