"""API keys in the store (SQLite and PostgreSQL; tests/helpers/stores.py) and on the command
line (``creditgate keys``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import eventually, stores
from tests.helpers.cli import POLICY, run

# pytest fixtures from tests/helpers/stores.py (SQLite and PostgreSQL)
compiled = stores.compiled
pg_store = stores.pg_store
pg_url = stores.pg_url
store = stores.store


def test_api_keys(store):
    key = store.keys.create("compliance", name="auditor")
    assert key.startswith("cg_") and len(key) > 40
    assert store.keys.role_of(key) == "compliance"
    assert store.keys.role_of(key + "x") is None and store.keys.role_of("") is None
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT key_hash FROM api_keys")).scalars().all()
    assert len(stored) == 1 and stored[0] != key and key not in stored[0]
    assert len(stored[0]) == 64
    with pytest.raises(ValueError):
        store.keys.create("superuser")


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", url)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert run("db", "upgrade").exit_code == 0
    return url


@pytest.mark.dates
def test_keys_list_and_revoke(db_env: str, tmp_path: Path) -> None:
    import sqlite3

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.core.settings import Settings
    from api.keys.persistence import hash_key

    erp = run("keys", "create", "--role", "order_entry", "--name", "erp").stdout.strip()
    audit = run("keys", "create", "--role", "compliance").stdout.strip()
    erp_id, audit_id = hash_key(erp)[:12], hash_key(audit)[:12]
    r = run("keys", "list")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["id", "role", "name", "created", "(UTC)", "revoked"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[erp_id][1:3] == ["order_entry", "erp"] and rows[erp_id][-1] == "no"
    assert rows[audit_id][1:3] == ["compliance", "-"] and rows[audit_id][-1] == "no"
    assert erp not in r.output and hash_key(erp) not in r.output  # neither key nor hash
    assert r.stderr.strip() == "2 keys"

    app = create_app(Settings(database_url=db_env, policy_path=str(POLICY)))
    try:
        client = TestClient(app, raise_server_exceptions=False)
        assert client.get("/v1/customers/NOBODY", headers={"X-API-Key": erp}).status_code == 404
        r = run("keys", "revoke", erp_id)
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == f"{erp_id}: revoked the order_entry key (erp)"
        # revoked by another process (the command's own store): refused within one second,
        # the key cache's time to live (api.keys.cache), without a read per request
        refused, seconds = eventually(
            lambda: client.get("/v1/customers/NOBODY", headers={"X-API-Key": erp}),
            lambda r: r.status_code == 401,
            within=1.5,
        )
        assert refused.status_code == 401 and seconds <= 1.2, seconds
        assert refused.json()["detail"] == "the API key is unknown or revoked"
        verify = client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {audit}"})
        assert verify.status_code == 200  # the other key still works
    finally:
        app.state.store.dispose()
    r = run("keys", "list")
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert rows[erp_id][-1] == "yes" and rows[audit_id][-1] == "no"
    r = run("keys", "revoke", hash_key(erp).upper())  # the full hash works too
    assert r.exit_code == 0 and "already revoked" in r.stdout

    # refused ids: nothing is revoked, exit 1, one clear line
    other = "0123456789abcdef" if not erp_id.startswith("01") else "fedcba9876543210"
    for bad, message in [
        ("xyz123", "'xyz123' is not a key id: 6 to 64 hex characters"),
        ("abc", "'abc' is not a key id"),
        (other[:12], f"no API key with id '{other[:12]}'"),
    ]:
        r = run("keys", "revoke", bad)
        assert r.exit_code == 1, r.output
        assert message in r.stderr and r.stderr.strip().endswith("nothing was revoked")
    db = Path(db_env.removeprefix("sqlite:///"))
    con = sqlite3.connect(db)
    for suffix in ("0" * 58, "1" * 58):
        con.execute(
            "INSERT INTO api_keys (key_hash, role, name, created_at, revoked) "
            "VALUES (?, 'admin', 'twin', '2026-01-01 00:00:00', 0)",
            ("abcdef" + suffix,),
        )
    con.commit()
    r = run("keys", "revoke", "abcdef")
    assert r.exit_code == 1
    assert "'abcdef' matches several keys (abcdef000000, abcdef111111)" in r.stderr
    assert con.execute("SELECT count(*) FROM api_keys WHERE revoked").fetchone() == (1,)
    con.close()
    assert run("keys", "revoke", "abcdef1").exit_code == 0
