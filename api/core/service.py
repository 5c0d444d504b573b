"""What every route needs: the ``Service`` of one app (settings, store, compiled policy,
metrics, replayer), kept in ``app.state.service`` and handed to routes by the ``service``
dependency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request

from api.core.metrics import Metrics
from engine.decision import Decision

__all__ = ["Service", "service"]


@dataclass
class Service:
    """The state of one app. ``store``: ``api.store.Store``; ``replayer``:
    ``api.policies.replayer.Replayer``; ``max_bytes``: largest JSON body accepted (bytes);
    ``import_bytes``: largest CSV import; ``clock``: the time source of decisions (tests)."""

    settings: Any
    store: Any
    compiled: Any
    metrics: Metrics
    replayer: Any
    max_bytes: int
    import_bytes: int
    clock: Callable[[], datetime] | None = None

    @property
    def policy(self) -> Any:
        return self.compiled.policy

    def evaluate(self, request: dict[str, Any]) -> Decision:
        """Evaluate ``request`` under the policy in force (``engine.evaluate.evaluate``)."""
        from engine.evaluate import evaluate

        return evaluate(self.compiled, request, clock=self.clock)


def service(request: Request) -> Service:
    """FastAPI dependency: the ``Service`` of the app serving ``request``."""
    return request.app.state.service
