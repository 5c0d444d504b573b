"""``--clock-ahead-days`` really moves the clock: the tests marked ``dates`` then run on a day
a year (or ten years) ahead, not on today's, in the test process and in the servers it
starts in other processes (through the service's clock setting)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import server_clock_env
from tests.pgserver import ROOT, LiveServer


def _real_now(tmp_path: Path) -> datetime:
    """The kernel's time, which time-machine does not move (a new file's mtime)."""
    probe = tmp_path / "probe"
    probe.write_text("now")
    return datetime.fromtimestamp(os.stat(probe).st_mtime, UTC)


@pytest.mark.dates
def test_clock_ahead_moves_the_clock_of_the_test_process(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    days = request.config.getoption("--clock-ahead-days")
    real = _real_now(tmp_path)
    moved = datetime.now(UTC) - real
    assert abs(moved - timedelta(days=days)) < timedelta(minutes=5)
    assert date.today() - real.date() in (timedelta(days=days), timedelta(days=days + 1))
    expected = {"CREDITGATE_MODE": "test", "CREDITGATE_CLOCK": f"+{days}d"} if days else {}
    assert server_clock_env() == expected


@pytest.mark.dates
def test_clock_ahead_moves_the_clock_of_a_server_it_starts(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    days = request.config.getoption("--clock-ahead-days")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": url, **server_clock_env()}
    keys = []
    for args in (("db", "upgrade"), ("keys", "create", "--role", "admin")):
        r = subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        keys.append(r.stdout.strip())
    server = LiveServer(url, tmp_path)
    try:
        headers = {"Authorization": f"Bearer {keys[-1]}"}
        r = httpx.put(
            f"{server.base}/v1/customers/C1",
            headers={**headers, "If-None-Match": "*"},
            json={"currency": "EUR", "credit_limit": "10.00"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        stamped = datetime.fromisoformat(r.json()["updated_at"])
        assert abs(stamped - _real_now(tmp_path) - timedelta(days=days)) < timedelta(minutes=5)
    finally:
        server.stop()
