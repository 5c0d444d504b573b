"""Policy texts: every policy that made a decision is stored verbatim, one text per policy
id and version (``PolicyTexts.save``), so any decision can be replayed under the exact text
that made it."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlmodel import select

from api.core.database import Database
from api.policies.exceptions import PolicyVersionConflict
from api.policies.tables import PolicyVersion

__all__ = ["POLICY_LOCK_KEY", "PolicyTexts", "policy_text_matches"]

POLICY_LOCK_KEY = 0x4347504F4C  # "CGPOL": serialises save (one text per version label)


class PolicyTexts:
    """The stored policy texts of one database."""

    def __init__(self, db: Database):
        self.db = db

    def save(self, policy: Any) -> None:
        """Record a policy version (``rules.policy.Policy``); idempotent by sha256. Raises
        ``PolicyVersionConflict`` if another text is recorded under the same policy id and
        version: the version label must identify one policy text for audit and
        ``?policy_version=`` filters."""
        with self.db.session(write=True) as s:
            # Check-then-insert under one lock: two texts saved under the same id and
            # version at once must not both pass the check (SQLite: writers are
            # serialised by BEGIN IMMEDIATE and the writer lock already).
            self.db.advisory_lock(s, POLICY_LOCK_KEY)
            if s.get(PolicyVersion, (self.db.unit, policy.sha256)) is None:
                other = s.exec(
                    select(PolicyVersion.sha256).where(
                        PolicyVersion.business_unit == self.db.unit,
                        PolicyVersion.policy_id == policy.id,
                        PolicyVersion.version == policy.version,
                    )
                ).first()
                if other is not None:
                    raise PolicyVersionConflict(
                        f"policy {policy.id} version {policy.version} is already recorded with "
                        f"another text (sha256 {other[:12]}; this file: {policy.sha256[:12]}); "
                        "raise 'version' in the policy file before putting a changed policy live"
                    )
                s.add(
                    PolicyVersion(
                        business_unit=self.db.unit,
                        created_at=self.db.clock.now(),
                        sha256=policy.sha256,
                        policy_id=policy.id,
                        version=policy.version,
                        source=policy.source,
                    )
                )

    def source(self, sha256: str) -> str | None:
        """The stored text of the policy ``sha256``, or None."""
        with self.db.session(write=False) as s:
            row = s.get(PolicyVersion, (self.db.unit, sha256))
            return row.source if row else None


def policy_text_matches(sha256: str, source: Any) -> bool:
    """Whether a stored policy text is the one recorded under ``sha256``: the sha256 of its
    UTF-8 bytes (``rules.loader`` hashes a file's raw bytes, which decode and re-encode to
    the same bytes, and a text's UTF-8 encoding)."""
    if not isinstance(source, str):
        return False
    try:
        return hashlib.sha256(source.encode("utf-8")).hexdigest() == sha256
    except UnicodeEncodeError:  # a lone surrogate: not a text rules could have hashed
        return False
