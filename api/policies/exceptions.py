"""Errors of the policy texts."""

from __future__ import annotations

__all__ = ["PolicyVersionConflict"]


class PolicyVersionConflict(ValueError):
    """Another policy text is already recorded under this policy id and version: decisions
    of two different policies would share one version label (raise ``version``)."""
