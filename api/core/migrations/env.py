"""Alembic environment. ``Database.upgrade()`` passes its own connection in
``config.attributes["connection"]``; the ``alembic`` command line builds an engine from
``sqlalchemy.url`` or the settings (``CREDITGATE_DATABASE_URL`` / ``DATABASE_URL``)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

# every domain's tables, registered on SQLModel's metadata
from api.core import chainhead  # noqa: F401
from api.customers import tables as _customers  # noqa: F401
from api.decisions import tables as _decisions  # noqa: F401
from api.fx import tables as _fx  # noqa: F401
from api.keys import tables as _keys  # noqa: F401
from api.ledger import tables as _ledger  # noqa: F401
from api.policies import tables as _policies  # noqa: F401

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from api.core.settings import Settings

    return Settings().database_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = create_engine(_url())
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
