"""The API keys every request presents, looked up without a database transaction per
request, and a revocation effective within one second across every worker.

``KeyCache.role(key)`` answers from memory while the key's entry was confirmed by the
database less than ``refresh_after`` seconds ago (0.5 s). Between ``refresh_after`` and
``ttl`` (1 s) it still answers from memory and has the entry re-read in the background, so
a steady stream of requests never waits for the database. Older than ``ttl`` (or never
seen) the request waits for one read (in a thread). So a key revoked by any process (the
``creditgate keys revoke`` command, another worker) is refused by every worker at most
``ttl`` seconds after the revocation committed. If the database cannot be read, an entry
older than ``ttl`` is not trusted: the lookup fails (``StoreUnavailable``, 503), never an
unchecked key. Unknown keys are remembered the same way (so a client retrying a bad key
costs one read per second), at most ``max_entries`` of them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api.keys.persistence import hash_key

__all__ = ["KeyCache"]

log = logging.getLogger("creditgate.api")


class KeyCache:
    """Roles of API keys by the sha256 of the key (see the module docstring). ``keys`` is
    the ``ApiKeys`` repository (``role_of_hash``)."""

    def __init__(
        self,
        keys: Any,
        *,
        ttl: float = 1.0,
        refresh_after: float = 0.5,
        max_entries: int = 10_000,
    ):
        self.keys = keys
        self.ttl = ttl
        self.refresh_after = refresh_after
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        self._background = ThreadPoolExecutor(1, thread_name_prefix="creditgate-keys")

    async def role(self, key: str) -> str | None:
        """The role of an active key, or None for an unknown or revoked one. Raises
        ``StoreUnavailable`` if the key must be checked and the database cannot be read."""
        digest = hash_key(key)
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None:
            role, checked = entry
            age = now - checked
            if age < self.refresh_after:
                return role
            if age < self.ttl:
                self._refresh_soon(digest)
                return role
        return await asyncio.to_thread(self._check, digest)

    def forget(self, digest: str | None = None) -> None:
        """Drop one entry (by the key's sha256) or all: the next use reads the database."""
        with self._lock:
            if digest is None:
                self._entries.clear()
            else:
                self._entries.pop(digest, None)

    def close(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)

    def _check(self, digest: str) -> str | None:
        started = time.monotonic()
        role = self.keys.role_of_hash(digest)
        self._remember(digest, role, started)
        return role

    def _remember(self, digest: str, role: str | None, checked: float) -> None:
        with self._lock:
            self._entries[digest] = (role, checked)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _refresh_soon(self, digest: str) -> None:
        with self._lock:
            if digest in self._refreshing:
                return
            self._refreshing.add(digest)
        try:
            self._background.submit(self._refresh, digest)
        except RuntimeError:  # shut down
            with self._lock:
                self._refreshing.discard(digest)

    def _refresh(self, digest: str) -> None:
        try:
            self._check(digest)
        except Exception as e:  # noqa: BLE001 - the entry expires; the next use fails closed
            log.warning("API key refresh failed: %s", type(e).__name__)
        finally:
            with self._lock:
                self._refreshing.discard(digest)
