"""The ``creditgate`` command line, run in-process through Typer's ``CliRunner``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import POLICY, ROOT, run

# -- keys list / revoke, database unavailable -----------------------------------------------


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
        refused = client.get("/v1/customers/NOBODY", headers={"X-API-Key": erp})
        assert refused.status_code == 401
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


UNREACHABLE = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x"
UNREACHABLE_LINE = (
    "creditgate: database unavailable at postgresql+psycopg://postgres:***@127.0.0.1:1/x "
    "(OperationalError); is it running?"
)


@pytest.mark.parametrize(
    "args",
    [("db", "upgrade"), ("keys", "list"), ("keys", "revoke", "abcdef"), ("audit", "verify")]
    + [("keys", "create", "--role", "admin")],
)
def test_unreachable_database_is_one_line_and_exit_3(
    args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", UNREACHABLE)
    r = run(*args)
    assert r.exit_code == 3, r.output
    assert r.stderr == UNREACHABLE_LINE + "\n" and r.stdout == ""
    assert "s3cret" not in r.output


def test_unmigrated_database_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    r = run("keys", "list")
    assert r.exit_code == 3
    assert r.stderr == (
        f"creditgate: database at sqlite:///{tmp_path / 'empty.db'} is not migrated "
        "(OperationalError); run 'creditgate db upgrade'\n"
    )


def test_serve_with_unreachable_database_exits_3_without_traceback(tmp_path: Path) -> None:
    p = _serve({"CREDITGATE_DATABASE_URL": UNREACHABLE, "CREDITGATE_POLICY_PATH": str(POLICY)})
    assert p.returncode == 3, p.stderr
    assert p.stderr == UNREACHABLE_LINE + "\n"
    assert p.stdout == ""


def _serve(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_a_changed_policy_under_the_same_version(tmp_path: Path) -> None:
    # The shipped policy is recorded; the same id and version with another text must not go
    # live: decisions of two policies would share one version label. Port 1 is never bound:
    # the checks run before uvicorn starts.
    from api.policies.exceptions import PolicyVersionConflict
    from api.store import Store
    from engine.evaluate import load

    url = f"sqlite:///{tmp_path / 'v.db'}"
    store = Store(url)
    store.upgrade()
    compiled = load(str(POLICY))
    store.policies.save(compiled.policy)
    changed = tmp_path / "policy.yaml"
    changed.write_text(POLICY.read_text().replace("utilisation > 2", "utilisation > 1.5", 1))
    assert changed.read_text() != POLICY.read_text()
    with pytest.raises(PolicyVersionConflict, match="raise 'version'"):
        store.policies.save(load(str(changed)).policy)
    store.dispose()
    p = _serve({"CREDITGATE_DATABASE_URL": url, "CREDITGATE_POLICY_PATH": str(changed)})
    assert p.returncode == 1, p.stderr
    line = p.stderr.strip()
    assert line.startswith(
        f"creditgate: policy trade-credit version {compiled.policy.version} is already "
        "recorded with another text"
    ), p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_serve_with_a_broken_policy_lists_its_errors_and_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(POLICY.read_text().replace("currency: EUR", "currency: EURO", 1))
    p = _serve(
        {
            "CREDITGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}",
            "CREDITGATE_POLICY_PATH": str(broken),
        }
    )
    assert p.returncode == 1, p.stderr
    assert f"{broken}:" in p.stderr and "currency" in p.stderr
    assert "Traceback" not in p.stderr
