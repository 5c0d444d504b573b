"""The ``creditgate`` command-line plumbing: ``db upgrade``, ``keys`` and ``audit`` end to
end, unreachable or unmigrated databases, ``serve`` refusing to start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.app import create_app
from api.core.settings import Settings
from tests.helpers.cli import ROOT, run
from tests.helpers.sqlite_api import POLICY, Api, _three_decisions, sql


def test_cli_db_keys_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.cli import app

    db = tmp_path / "cli.db"
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", f"sqlite:///{db}")
    runner = CliRunner()
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "ok: database migrated from schema (none: new) to 0006_customer_history\n"
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.stdout == "ok: database is up to date (schema 0006_customer_history)\n"
    r = runner.invoke(app, ["keys", "create", "--role", "compliance", "--name", "auditor"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert key.startswith("cg_")
    r = runner.invoke(app, ["keys", "create", "--role", "root"])
    assert r.exit_code == 2 and "unknown role" in r.output

    api = Api(create_app(Settings(database_url=f"sqlite:///{db}", policy_path=str(POLICY))), db)
    try:
        assert api.client.get("/v1/audit/verify", headers={"X-API-Key": key}).json()["ok"]
        _three_decisions(api)
    finally:
        api.store.dispose()
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 0, r.output
    ((head_hash,),) = sql(db, "SELECT record_hash FROM decision_log WHERE seq = 3")
    ((history_hash,),) = sql(db, "SELECT record_hash FROM customer_history WHERE seq = 2")
    assert r.stdout.splitlines() == [
        f"ok: decision log: 3 records, hash chain intact; head seq 3 record_hash {head_hash}",
        "ok: ledger events: 0 records, hash chain intact; no head",
        "ok: customer history: 2 records, hash chain intact; head seq 2 record_hash "
        f"{history_hash}",
        "ok: ledger consistency: 2 customers, 1 policy text; open orders match the open "
        "reservations, reservations match the ledger events, policy texts match their sha256 "
        "and every logged policy is stored",
    ]
    sql(db, "UPDATE decision_log SET caller = 'someone else' WHERE seq = 3")
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 1
    assert "BROKEN: decision log at seq 3: record_hash" in r.stderr
    sql(db, "DELETE FROM decision_log WHERE seq = 3")
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 1
    assert "at seq 3: log ends at seq 2 but the head says 3" in r.stderr


def test_cli_serve_is_registered() -> None:
    from api.cli import app

    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    assert "--port" in r.output and "--host" in r.output


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
    (tmp_path / "empty.db").touch()  # a file, but no tables
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    r = run("keys", "list")
    assert r.exit_code == 3
    assert r.stderr == (
        f"creditgate: database at sqlite:///{tmp_path / 'empty.db'} is not migrated "
        "(OperationalError); run 'creditgate db upgrade'\n"
    )


@pytest.mark.parametrize(
    "args", [("keys", "list"), ("audit", "verify"), ("keys", "revoke", "ab12cd")]
)
def test_a_missing_sqlite_file_is_not_created_by_reading_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "typo.db"
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", f"sqlite:///{missing}")
    r = run(*args)
    assert r.exit_code == 3, r.output
    assert r.stderr == (
        f"creditgate: database at sqlite:///{missing} is not migrated (no such file); "
        "run 'creditgate db upgrade'\n"
    )
    assert not missing.exists()
    assert run("db", "upgrade").exit_code == 0 and missing.exists()  # the one that creates


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
