"""Shared test helpers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_ADMIN = os.environ.get("CREDITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server at ``CREDITGATE_TEST_PG`` (default the
    machine's 127.0.0.1:5432), yielded as a SQLAlchemy ``postgresql+psycopg://`` URL and
    dropped afterwards. Skips the test, with the reason, when no server is reachable."""
    import sqlalchemy as sa

    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {e}".splitlines()[0])
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = sa.make_url(PG_ADMIN.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# -- the clock ---------------------------------------------------------------------------
# The suite must pass on any day of the next ten years. ``--clock-ahead-days N`` moves the
# clock of the whole test session N days ahead (time-machine; it keeps ticking), and every
# server a test starts in another process gets the same clock through the service's clock
# setting (``server_clock_env``: ``CREDITGATE_MODE=test``, ``CREDITGATE_CLOCK=+Nd``; in the
# test process itself time-machine has moved the clock already). scripts/test runs the tests
# marked ``dates`` this way, a year and ten years ahead.

CLOCK_AHEAD = {"days": 0}


def server_clock_env() -> dict[str, str]:
    """The environment that gives a server in another process the test session's clock."""
    days = CLOCK_AHEAD["days"]
    return {"CREDITGATE_MODE": "test", "CREDITGATE_CLOCK": f"+{days}d"} if days else {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-ahead-days",
        type=int,
        default=0,
        metavar="N",
        help="run with the clock moved N days ahead (test process and the servers it starts)",
    )


@pytest.fixture(autouse=True, scope="session")
def _clock_ahead(request: pytest.FixtureRequest) -> Iterator[None]:
    days = request.config.getoption("--clock-ahead-days")
    if not days:
        yield
        return
    from datetime import UTC, datetime, timedelta

    import time_machine

    CLOCK_AHEAD["days"] = days
    try:
        with time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True):
            yield
    finally:
        CLOCK_AHEAD["days"] = 0


def pytest_report_header(config: pytest.Config) -> str | None:
    days = config.getoption("--clock-ahead-days")
    if not days:
        return None
    return f"clock moved {days} days ahead (time-machine; servers: CREDITGATE_CLOCK=+{days}d)"
