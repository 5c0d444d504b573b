"""API keys: create (the key is returned once; only its sha256 is stored), list, revoke, and
look up the role of a presented key."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from sqlmodel import col, select

from api.core import chain
from api.core.auth import KEY_ID_LENGTH, ROLES
from api.core.database import Database
from api.keys.exceptions import AmbiguousKey, UnknownKey
from api.keys.tables import ApiKey

__all__ = ["KEY_ID_LENGTH", "MIN_KEY_ID_LENGTH", "ApiKeys", "hash_key"]

MIN_KEY_ID_LENGTH = 6  # the shortest id prefix accepted by revoke


def hash_key(key: str) -> str:
    """sha256 (hex) of an API key: what is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """The API keys of one database."""

    def __init__(self, db: Database):
        self.db = db
        # called with a key's sha256 after it was revoked here (the app's KeyCache forgets it)
        self.listeners: list[Callable[[str], None]] = []

    def create(self, role: str, name: str = "") -> str:
        """A new key for ``role``: returned once in plain text (``cg_`` + 32 random bytes,
        urlsafe base64); only its sha256 is stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        key = "cg_" + secrets.token_urlsafe(32)
        with self.db.session(write=True) as s:
            s.add(
                ApiKey(
                    key_hash=hash_key(key),
                    role=role,
                    name=name or "",
                    business_unit=self.db.unit,
                    created_at=self.db.clock.now(),
                )
            )
        return key

    def list(self) -> list[dict[str, Any]]:
        """Every API key, oldest first: ``{key_id, role, name, created_at, revoked}``;
        ``key_id`` = the first ``KEY_ID_LENGTH`` hex characters of the key's sha256 (what the
        decision log's ``caller`` shows). Never the key (it is not stored)."""
        with self.db.session(write=False) as s:
            rows = s.exec(
                select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.key_hash))
            ).all()
            return [
                {
                    "key_id": r.key_hash[:KEY_ID_LENGTH],
                    "role": r.role,
                    "name": r.name,
                    "created_at": chain.as_utc(r.created_at),
                    "revoked": bool(r.revoked),
                }
                for r in rows
            ]

    def revoke(self, key_id: str) -> dict[str, Any]:
        """Revoke the key whose sha256 starts with ``key_id`` (hex, at least
        ``MIN_KEY_ID_LENGTH`` characters: the ``key_id`` of ``list`` or a longer prefix).
        Returns the key's ``list`` entry plus ``already_revoked``. Raises ``UnknownKey`` (no
        match, or not a hex prefix) or ``AmbiguousKey`` (several keys match; nothing
        revoked). ``role_of`` refuses a revoked key from then on."""
        prefix = key_id.strip().lower() if isinstance(key_id, str) else ""
        if not MIN_KEY_ID_LENGTH <= len(prefix) <= 64 or any(
            c not in "0123456789abcdef" for c in prefix
        ):
            raise UnknownKey(
                f"{key_id!r} is not a key id: {MIN_KEY_ID_LENGTH} to 64 hex characters "
                "as shown by 'creditgate keys list'"
            )
        with self.db.session(write=True) as s:
            rows = s.exec(
                select(ApiKey).where(col(ApiKey.key_hash).startswith(prefix)).limit(10)
            ).all()
            if not rows:
                raise UnknownKey(f"no API key with id {prefix!r}")
            if len(rows) > 1:
                ids = ", ".join(sorted(r.key_hash[:KEY_ID_LENGTH] for r in rows))
                raise AmbiguousKey(f"{prefix!r} matches several keys ({ids}); give more of the id")
            row = rows[0]
            already = bool(row.revoked)
            row.revoked = True
            digest = row.key_hash
            answer = {
                "key_id": row.key_hash[:KEY_ID_LENGTH],
                "role": row.role,
                "name": row.name,
                "created_at": chain.as_utc(row.created_at),
                "revoked": True,
                "already_revoked": already,
            }
        for forget in self.listeners:
            forget(digest)
        return answer

    def role_of(self, key: str) -> str | None:
        """The role of an active key, or None for an unknown or revoked key."""
        if not isinstance(key, str) or not key:
            return None
        return self.role_of_hash(hash_key(key))

    def role_of_hash(self, digest: str) -> str | None:
        """The role of the active key whose sha256 is ``digest``, or None."""
        with self.db.session(write=False) as s:
            row = s.get(ApiKey, digest)
            return row.role if row is not None and not row.revoked else None
