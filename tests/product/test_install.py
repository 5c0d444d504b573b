"""The Docker image's install, proved without a Docker engine.

``test_dockerfile_*`` / ``test_compose_*`` (fast) read ``Dockerfile`` and ``compose.yaml`` and
check the properties the image promises (Python 3.12 slim, a compiler only in the build
stage, non-root user, healthcheck, the service command, SQLite in a volume; PostgreSQL 15
in compose), so drift is caught by the normal suite.

``test_image_install_serves_decisions`` (``slow``: builds every wheel, about 1-3 minutes)
performs the Dockerfile's steps in fresh Python 3.12 virtual environments: the files the
build stage COPYs (read from the Dockerfile) are copied to a clean directory, ``pip wheel``
builds the app and every dependency (durable_rules from source), the runtime environment
installs ``creditgate`` from those wheels only (``--no-index``, not editable), and the
service is started from that environment outside the repository, with the runtime stage's
environment (policy copied beside it, SQLite file in a data directory). It waits with the
Dockerfile's own HEALTHCHECK command, creates keys with ``creditgate keys create``, loads a
customer, decides one order over HTTP, checks ``/readyz`` and the audit chain, and stops the
server. Skipped, with the reason shown, where no Python 3.12 interpreter is installed.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_stages(text: str | None = None) -> list[dict[str, Any]]:
    """The Dockerfile as stages: ``{"base", "name", "instructions": [(KEYWORD, args)]}``
    (continuation lines joined, comments dropped)."""
    text = DOCKERFILE.read_text(encoding="utf-8") if text is None else text
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current.strip())
        current = ""
    stages: list[dict[str, Any]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"base": parts[0], "name": name, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((keyword, args.strip()))
    return stages


def _last(stage: dict[str, Any], keyword: str) -> str | None:
    found = [a for k, a in stage["instructions"] if k == keyword]
    return found[-1] if found else None


def _all(stage: dict[str, Any], keyword: str) -> list[str]:
    return [a for k, a in stage["instructions"] if k == keyword]


def _exec_form(args: str) -> list[str]:
    args = args.strip()
    if args.startswith("["):
        return json.loads(args)
    return ["/bin/sh", "-c", args]


def _env(stage: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for args in _all(stage, "ENV"):
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            if sep:
                out[key] = value
    return out


def _healthcheck_command(stage: dict[str, Any]) -> list[str]:
    hc = _last(stage, "HEALTHCHECK")
    assert hc is not None, "the runtime stage has no HEALTHCHECK"
    assert " CMD " in f" {hc} ", hc
    return _exec_form(hc.split("CMD", 1)[1])


def _build_copies(stage: dict[str, Any]) -> list[str]:
    """Source paths the stage COPYs from the build context (not --from=...)."""
    paths: list[str] = []
    for args in _all(stage, "COPY"):
        tokens = [t for t in shlex.split(args) if not t.startswith("--chown")]
        if any(t.startswith("--from") for t in tokens):
            continue
        tokens = [t for t in tokens if not t.startswith("--")]
        paths.extend(tokens[:-1])
    return paths


def test_dockerfile_stages_and_base() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    for stage in stages:
        assert re.fullmatch(r"python:3\.12(\.\d+)?-slim(-[a-z]+)?", stage["base"]), stage["base"]
    build, runtime = stages[0], stages[-1]
    build_run = " ".join(_all(build, "RUN"))
    assert "gcc" in build_run, "durable_rules is source-only: the build stage needs gcc"
    assert "pip wheel" in build_run
    runtime_run = " ".join(_all(runtime, "RUN"))
    assert "gcc" not in runtime_run, "no compiler in the runtime image"
    assert "--no-index" in runtime_run, "the runtime installs only the built wheels"
    assert any(f"--from={build['name']}" in a for a in _all(runtime, "COPY"))


def test_dockerfile_runtime_is_non_root_with_healthcheck_and_serve() -> None:
    runtime = dockerfile_stages()[-1]
    user = _last(runtime, "USER")
    assert user is not None, "the runtime stage must set USER"
    assert user.split(":")[0] not in ("root", "0"), user
    cmd = _healthcheck_command(runtime)
    assert "/healthz" in " ".join(cmd)
    assert "curl" not in cmd[0] and "wget" not in cmd[0], "slim images have no curl"
    assert _exec_form(_last(runtime, "CMD") or "") == [
        "creditgate", "serve", "--host", "0.0.0.0", "--port", "8000",
    ]
    env = _env(runtime)
    db = env.get("DATABASE_URL") or env.get("CREDITGATE_DATABASE_URL")
    assert db and db.startswith("sqlite:////"), db
    volumes = " ".join(_all(runtime, "VOLUME"))
    assert str(Path(db.removeprefix("sqlite:///")).parent) in volumes, (db, volumes)
    policy = env.get("CREDITGATE_POLICY_PATH")
    assert policy and Path(policy).name in " ".join(_all(runtime, "COPY")), policy


def test_dockerfile_copies_only_existing_files() -> None:
    for stage in dockerfile_stages():
        for path in _build_copies(stage):
            assert (ROOT / path).exists(), f"Dockerfile COPY {path}: no such file"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for stage in dockerfile_stages():
        for path in _build_copies(stage):
            assert path.rstrip("/") not in ignored, f"{path} is COPYed but .dockerignore'd"


def test_compose_runs_the_service_on_postgresql_15() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    db = next(s for s in services.values() if str(s.get("image", "")).startswith("postgres:"))
    assert db["image"] == "postgres:15"
    assert "healthcheck" in db
    app = next(s for s in services.values() if "build" in s)
    url = app["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://"), url
    assert "healthcheck" in app
    depends = app["depends_on"]
    assert any(v.get("condition") == "service_healthy" for v in depends.values())


# --------------------------------------------------------------------------- the install


def find_python312() -> str | None:
    """A working python3.12, looked for as ``scripts/test`` does (PATH, then pyenv)."""
    candidates = [shutil.which("python3.12")]
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"))
    for c in candidates:
        if not c:
            continue
        try:
            ok = subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                                capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return c
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], *, timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _call(
    method: str, url: str, key: str | None = None, body: Any = None, **headers: str
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.mark.slow
def test_image_install_serves_decisions(tmp_path: Path) -> None:
    py312 = find_python312()
    if py312 is None:
        pytest.skip("no Python 3.12 interpreter (PATH or pyenv): the image's install is not "
                    "exercised on this machine")
    build_stage, runtime = dockerfile_stages()[0], dockerfile_stages()[-1]

    # build stage: the COPYed files only, then pip wheel
    src = tmp_path / "src"
    src.mkdir()
    for path in _build_copies(build_stage):
        source = ROOT / path
        if source.is_dir():
            shutil.copytree(source, src / path,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, src / path)
    wheels = tmp_path / "wheels"
    _run([py312, "-m", "venv", str(tmp_path / "build-venv")], timeout=120)
    bpy = str(tmp_path / "build-venv" / "bin" / "python")
    _run([bpy, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(src)],
         timeout=900, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    app_wheels = list(wheels.glob("creditgate-*.whl"))
    assert len(app_wheels) == 1, sorted(p.name for p in wheels.iterdir())
    assert list(wheels.glob("durable_rules-*.whl")), "durable_rules was not built"
    names = set(zipfile.ZipFile(app_wheels[0]).namelist())
    for needed in ("api/core/migrations/env.py", "api/core/migrations/script.py.mako",
                   "api/core/migrations/versions/0001_initial.py", "api/app.py",
                   "api/decisions/routes.py", "analysis/backtest.py", "engine/evaluate.py",
                   "rules/compile.py"):
        assert needed in names, f"{needed} is not in {app_wheels[0].name}"

    # runtime stage: install from the wheels only, run outside the repository
    venv = tmp_path / "venv"
    _run([py312, "-m", "venv", str(venv)], timeout=120)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
          "--find-links", str(wheels), "creditgate"], timeout=600)
    app_dir, data_dir = tmp_path / "app", tmp_path / "data"
    app_dir.mkdir()
    data_dir.mkdir()
    for path in _build_copies(runtime):
        shutil.copy2(ROOT / path, app_dir / Path(path).name)
    image_env = _env(runtime)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CREDITGATE_", "PYTHON", "VIRTUAL_ENV")) and k != "DATABASE_URL"}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CREDITGATE_POLICY_PATH": str(app_dir / Path(image_env["CREDITGATE_POLICY_PATH"]).name),
        "DATABASE_URL": f"sqlite:///{data_dir / 'creditgate.db'}",
    })
    creditgate = str(venv / "bin" / "creditgate")
    r = _run([str(venv / "bin" / "python"), "-c",
              "import api, durable, sys; print(api.__file__, sys.version_info[:2])"],
             timeout=60, env=env, cwd=app_dir)
    assert str(venv) in r.stdout and "(3, 12)" in r.stdout, r.stdout

    port = free_port()
    cmd = _exec_form(_last(runtime, "CMD") or "")
    cmd = [creditgate if c == "creditgate" else c for c in cmd]
    cmd[cmd.index("--port") + 1] = str(port)
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(cmd, env=env, cwd=app_dir, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        health = [str(venv / "bin" / "python") if c == "python" else c.replace(":8000", f":{port}")
                  for c in _healthcheck_command(runtime)]
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            if subprocess.run(health, capture_output=True, timeout=10).returncode == 0:
                break
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)

        base = f"http://127.0.0.1:{port}"
        status, ready = _call("GET", f"{base}/readyz")
        assert status == 200 and ready["status"] == "ready", ready
        keys = {role: _run([creditgate, "keys", "create", "--role", role], timeout=60,
                           env=env, cwd=app_dir).stdout.strip()
                for role in ("admin", "order_entry")}
        assert all(k.startswith("cg_") for k in keys.values()), keys
        status, body = _call("PUT", f"{base}/v1/customers/CUST-1", keys["admin"], {
            "currency": "EUR", "credit_limit": "100000.00", "open_receivables": "20000.00",
            "facts": {"years_in_business": 12, "risk_class": "low", "avg_days_late": "0.4"},
        }, **{"If-None-Match": "*"})
        assert status == 200, body
        status, decision = _call("POST", f"{base}/v1/decisions", keys["order_entry"], {
            "order_id": "SO-1", "customer_id": "CUST-1", "amount": "12500.00",
            "currency": "EUR", "payment_term_days": 60,
        })
        assert status == 200, decision
        assert decision["outcome"] in ("approve", "refer", "decline")
        assert decision["policy"]["id"] == "trade-credit"
        status, _ = _call("POST", f"{base}/v1/decisions", None, {})
        assert status == 401
        r = _run([creditgate, "audit", "verify"], timeout=60, env=env, cwd=app_dir)
        assert r.stdout.startswith("ok: decision log: 1 record, hash chain intact"), r.stdout
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        log.close()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it (exit status -SIGTERM)
    server_log = (tmp_path / "server.log").read_text()
    assert server.returncode in (0, -signal.SIGTERM), server_log
    assert "Application shutdown complete" in server_log, server_log
    assert (data_dir / "creditgate.db").exists()
