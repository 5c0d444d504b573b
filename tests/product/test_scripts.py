"""The README's run command, ``scripts/run``, as a user runs it.

It must start the decision service on the shipped policy with the demo customers of
../shared/data/ar-invoices/ and print a working ``curl``. The test runs the script on a free
port with a fresh SQLite file, waits for the printed ``curl``, runs that exact command with
the real ``curl`` binary and checks the answer: the same order the script already decided
once, so the stored decision comes back as ``kind: repeat`` with the outcome the script
printed. Then Ctrl-C (SIGINT) must stop the service.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.pgserver import free_port

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT.parent / "shared" / "data" / "ar-invoices" / "accounts-receivable.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CSV.exists(), reason=f"shared data missing: {CSV}"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary on this machine"),
]


def test_run_command_serves_demo_customers_and_prints_a_working_curl(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
    }
    env.pop("CREDITGATE_DATABASE_URL", None)
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("The service runs in the foreground"):
                break
        text = "\n".join(lines)
        curl = next(x.strip() for x in lines if x.strip().startswith("curl -sS -X POST"))
        answer = re.search(r"^  (approve|refer|decline) \(tier (\w+)", text, re.M)
        assert answer, text
        assert f"http://127.0.0.1:{port}/v1/decisions" in curl

        out = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        decision = json.loads(out.stdout)
        assert decision["outcome"] == answer.group(1)
        assert decision["tier"] == answer.group(2)
        assert decision["kind"] == "repeat"  # the script decided this order once already
        assert decision["policy"]["id"] == "trade-credit"
        assert decision["currency"] == "EUR"

        # the demo customer came from the AR data, and the approved order is reserved
        position = next(x.split(": ", 1)[1] for x in lines if x.startswith("Customer position:"))
        out = subprocess.run(shlex.split(position), capture_output=True, text=True, timeout=60)
        customer = json.loads(out.stdout)
        assert customer["customer_id"] == decision["customer_id"]
        assert customer["currency"] == "EUR"
        if decision["outcome"] == "approve":
            assert customer["open_orders"] == "120.00"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            pytest.fail("scripts/run did not stop on Ctrl-C (SIGINT) within 30 s")
