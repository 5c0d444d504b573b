"""Test helpers: a private PostgreSQL server and a live ``creditgate serve`` process.

``PrivatePostgres`` runs ``initdb`` / ``pg_ctl`` (binaries from ``/usr/lib/postgresql/*/bin``
or ``PATH``) on a free port with its data directory in a fresh temporary directory, so a
test may stop it (``pg_ctl stop -m immediate``: the server processes die without a
checkpoint, like a crash) and start it again. The machine's shared server is never touched.
PostgreSQL refuses to run as root: as root the commands run as the ``postgres`` user through
``runuser`` (the directory is chowned to it). ``PrivatePostgres.unavailable()`` says why it
cannot be used here (for ``pytest.skip``), or returns None.

``LiveServer`` starts ``python -m api.cli serve`` (uvicorn, one worker) on a free port with
the given database URL and waits for ``/readyz``; ``kill()`` sends SIGKILL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import server_clock_env

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    return None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth, user ``postgres``) on 127.0.0.1."""

    USER = "postgres"

    @classmethod
    def unavailable(cls) -> str | None:
        if _pg_bindir() is None:
            return "no initdb/pg_ctl (looked in /usr/lib/postgresql/*/bin and PATH)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(cls.USER)
            except KeyError:
                return "running as root and there is no 'postgres' user to run initdb as"
            if shutil.which("runuser") is None:
                return "running as root and runuser is missing"
        return None

    def __init__(self) -> None:
        reason = self.unavailable()
        if reason:
            raise RuntimeError(reason)
        self.bindir = _pg_bindir()
        # not under pytest's tmp_path: its parent is private to root (mode 0700)
        self.dir = Path(tempfile.mkdtemp(prefix="cg-private-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "server.log"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            pw = pwd.getpwnam(self.USER)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        )

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", self.USER, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.dir)
        if check and r.returncode != 0:
            log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{tool} failed ({r.returncode}): {r.stderr or r.stdout}\n{log}")
        return r

    def start(self) -> None:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def cleanup(self) -> None:
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class LiveServer:
    """``creditgate serve`` in a subprocess (its own process group, so a kill reaches every
    worker) on a free port, ``workers`` uvicorn workers, ``env`` added to the environment;
    stderr in ``logfile``."""

    def __init__(
        self,
        database_url: str,
        logdir: Path,
        *,
        ready_timeout: float = 60,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ):
        import httpx

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.logfile = logdir / f"server-{self.port}.log"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CREDITGATE_DATABASE_URL": database_url,
            "CREDITGATE_POLICY_PATH": str(POLICY),
            **server_clock_env(),  # the test session's clock (--clock-ahead-days)
            **(env or {}),
        }
        command = [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)]
        if workers > 1:
            command += ["--workers", str(workers)]
        with open(self.logfile, "wb") as err:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server not ready after {ready_timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, n: int = 3000) -> str:
        return self.logfile.read_text(errors="replace")[-n:] if self.logfile.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the server and its workers."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM (uvicorn stops its workers), SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # a worker left behind
        except ProcessLookupError:
            pass
