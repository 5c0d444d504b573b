"""Compiled policies by sha256, for replaying and masking records made under any stored
policy version."""

from __future__ import annotations

import threading
from typing import Any

from api.core.problems import Problem
from api.policies.persistence import policy_text_matches

__all__ = ["Replayer"]


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
                source = self._store.policies.source(sha256)
                if source is None:
                    raise Problem(
                        "conflict",
                        f"the policy {sha256[:12]} that made this decision is not stored; "
                        "it cannot be replayed",
                    )
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
