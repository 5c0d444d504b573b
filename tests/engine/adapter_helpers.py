"""Helpers of the engine/adapter.py regression tests (tests/engine/test_adapter_*.py): a
child interpreter with a timeout, the raw durable_rules engine in-process, fresh ruleset
keys. The fixtures ``adapter_engine`` and ``adapter_reg`` are in tests/engine/conftest.py."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import durable_rules_engine as dre
from durable import engine as durable

REPO = Path(__file__).resolve().parents[2]
_keys = itertools.count()


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
@dataclass
class Ran:
    """Outcome of a child interpreter; ``returncode`` None means it was killed on timeout."""

    returncode: int | None
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _python(code: str, timeout: float) -> Ran:
    """Run ``code`` in a fresh interpreter with the repo on sys.path. On timeout the child
    is killed (by ``subprocess.run``) and its partial output kept."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        return Ran(None, _text(exc.stdout), _text(exc.stderr))
    return Ran(done.returncode, done.stdout, done.stderr)


_RAW_PRELUDE = """
import json, sys, threading, time
import durable_rules_engine as dre
from durable import engine as d

class QuietHost(d.Host):
    def _run(self):
        pass
"""


class _RawHost(durable.Host):
    """A plain durable Host minus its dispatcher threads, for in-process raw demos."""

    def _run(self) -> None:
        return None


_raw_host = _RawHost()
_raw_names = itertools.count()


def raw_match(rules: dict[str, Any], fact: dict[str, Any]) -> set[str]:
    """Evaluate ``rules`` on the raw engine through durable's own Python path
    (``Host.assert_fact``). A catch-all keeps every session safe to delete."""
    fired: list[str] = []
    name = f"raw{next(_raw_names)}"
    definition = {
        rid: {"all": [{"m": cond}], "run": (lambda r: lambda c: fired.append(r))(rid)}
        for rid, cond in rules.items()
    }
    definition["_all"] = {"all": [{"m": {"raw__all": 1}}], "run": lambda c: None}
    _raw_host.register_rulesets({name: definition})
    ruleset = _raw_host.get_ruleset(name)
    try:
        _raw_host.assert_fact(name, {**fact, "raw__all": 1, "sid": "1"})
        _raw_host.delete_state(name, "1")
    finally:
        del _raw_host._ruleset_directory[name]
        _raw_host._ruleset_list.remove(ruleset)
        dre.delete_ruleset(ruleset._handle)
    return set(fired)


def key() -> str:
    return f"t_{os.getpid()}_{next(_keys)}"
