"""Fixtures and helpers shared by test modules in several folders (no tests here).

Two fixtures of one name do different things in different helpers (``api`` in
sqlite_api.py and ledger.py; ``store``, ``compiled`` and ``pg_url`` in stores.py and
ledger.py), so they are not in a conftest.py: a test module takes the ones it uses by
assigning them, e.g. ``api = sqlite_api.api``, and pytest finds them under those names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def eventually(
    attempt: Callable[[], Any], done: Callable[[Any], bool], within: float
) -> tuple[Any, float]:
    """Call ``attempt`` until ``done(result)`` or ``within`` seconds have passed; returns the
    last result and the seconds it took (for guarantees stated as "within N seconds", such
    as a key revocation reaching every worker)."""
    start = time.monotonic()
    while True:
        result = attempt()
        elapsed = time.monotonic() - start
        if done(result) or elapsed > within:
            return result, elapsed
        time.sleep(0.02)
