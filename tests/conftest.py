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
