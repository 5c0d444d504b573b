"""What every route needs: the ``Service`` of one app (settings, store, compiled policy,
metrics, replayer, clock, decision writer), kept in ``app.state.service`` and handed to
routes by the ``service`` dependency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import Request

from api.core.clock import Clock
from api.core.metrics import Metrics
from engine.decision import Decision

__all__ = ["Service", "service"]


@dataclass
class Service:
    """The state of one app. ``store``: ``api.store.Store``; ``replayer``:
    ``api.policies.replayer.Replayer``; ``writer``: ``api.decisions.writer.DecisionWriter``
    (group commit); ``max_bytes``: largest JSON body accepted (bytes); ``import_bytes``:
    largest CSV import; ``clock``: the time source of everything the service decides and
    records (``api.core.clock``)."""

    settings: Any
    store: Any
    compiled: Any
    metrics: Metrics
    replayer: Any
    writer: Any
    max_bytes: int
    import_bytes: int
    clock: Clock

    @property
    def policy(self) -> Any:
        return self.compiled.policy

    def today(self) -> date:
        """Today's date in UTC by the service's clock."""
        return self.clock.today()

    def setting(self, name: str) -> int:
        """A numeric setting (its default when the settings object lacks it)."""
        from api.core.settings import Settings

        value = getattr(self.settings, name, None)
        return int(Settings.model_fields[name].default if value is None else value)

    def evaluate(self, request: dict[str, Any]) -> Decision:
        """Evaluate ``request`` under the policy in force (``engine.evaluate.evaluate``)."""
        from engine.evaluate import evaluate

        return evaluate(self.compiled, request, clock=self.clock)


async def service(request: Request) -> Service:
    """FastAPI dependency: the ``Service`` of the app serving ``request``."""
    return request.app.state.service
