"""The policy in force over HTTP (SQLite; tests/helpers/sqlite_api.py) and one stored text
per policy version label (SQLite and PostgreSQL; tests/helpers/stores.py)."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from tests.helpers import sqlite_api, stores
from tests.helpers.sqlite_api import Api

# pytest fixtures from tests/helpers/sqlite_api.py (on a SQLite file)
api = sqlite_api.api
# pytest fixtures from tests/helpers/stores.py (SQLite and PostgreSQL)
compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store


def test_policy_in_force(api: Api) -> None:
    for role in ("reviewer", "compliance", "admin"):
        r = api.client.get("/v1/policy", headers=api.h(role))
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "trade-credit" and r.json()["currency"] == "EUR"
        assert r.json()["rules"] == 39


def test_one_text_per_policy_version_label_under_concurrent_saves(store):
    """Threads saving the same policy id and version with different texts at once: exactly
    one text is stored, every other save is a PolicyVersionConflict (no check-then-insert
    race)."""
    import hashlib
    from types import SimpleNamespace

    from api.policies.exceptions import PolicyVersionConflict

    n = 4
    for attempt in range(3):
        policies = []
        for i in range(n):
            source = f"policy: race\nversion: v{attempt}\n# text {i}\n"
            sha = hashlib.sha256(source.encode()).hexdigest()
            policies.append(
                SimpleNamespace(id="race", version=f"v{attempt}", sha256=sha, source=source)
            )
        start = threading.Barrier(n)
        saved, conflicts, errors = [], [], []

        def run(p, start=start, saved=saved, conflicts=conflicts, errors=errors):
            try:
                start.wait()
                store.policies.save(p)
                saved.append(p.sha256)
            except PolicyVersionConflict:
                conflicts.append(p.sha256)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(p,)) for p in policies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(saved) == 1 and len(conflicts) == n - 1, (saved, conflicts)
        with store.engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT sha256 FROM policy_versions WHERE version = :v"),
                {"v": f"v{attempt}"},
            ).all()
        assert [r[0] for r in stored] == saved
