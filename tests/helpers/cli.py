"""The ``creditgate`` command line, run in-process through Typer's ``CliRunner``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from api.cli import app

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies.yaml"
REQUESTS = ROOT / "examples" / "requests"

runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)
