"""What every route needs: the ``Service`` of one app (settings, store, compiled policy,
metrics, replayer), kept in ``app.state.service`` and handed to routes by the ``service``
dependency."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request

from api.metrics import Metrics
from api.problems import Problem
from engine.decision import Decision

__all__ = ["Replayer", "Service", "service"]


class Replayer:
    """Compiled policies by sha256 (compiled once, from the stored source text). A stored
    text that does not hash to its sha256 is refused (500 ``policy_text_altered``): a
    replay under an edited policy would prove nothing."""

    def __init__(self, store: Any, current: Any):
        self._store = store
        self._cache: dict[str, Any] = {current.policy.sha256: current}
        self._lock = threading.Lock()

    def compiled(self, sha256: str) -> Any:
        hit = self._cache.get(sha256)
        if hit is not None:
            return hit
        from rules.compile import compile_policy
        from rules.validate import load_policy_text

        with self._lock:
            hit = self._cache.get(sha256)
            if hit is None:
                source = self._store.policy_source(sha256)
                if source is None:
                    raise Problem(
                        "conflict",
                        f"the policy {sha256[:12]} that made this decision is not stored; "
                        "it cannot be replayed",
                    )
                from api.store import policy_text_matches

                if not policy_text_matches(sha256, source):
                    raise Problem(
                        "policy_text_altered",
                        f"the stored text of policy {sha256[:12]} does not hash to its sha256: "
                        "it was changed after it was recorded, so the decision is not replayed; "
                        "run 'creditgate audit verify' and restore the database",
                    )
                hit = compile_policy(load_policy_text(source, f"policy:{sha256[:12]}"))
                self._cache[sha256] = hit
            return hit


@dataclass
class Service:
    """The state of one app. ``max_bytes``: largest JSON body accepted (bytes);
    ``import_bytes``: largest CSV import; ``clock``: the time source of decisions (tests)."""

    settings: Any
    store: Any
    compiled: Any
    metrics: Metrics
    replayer: Replayer
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
