"""Alembic environment: the database URL comes from the service settings, not alembic.ini.

``backend.db.upgrade_database`` passes its own connection (``config.attributes``) so the
migration runs inside the lock it holds; the ``alembic`` command line connects itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection

from backend.db import make_engine
from backend.models import Base, UTCDateTime
from backend.settings import get_settings

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name)


def _database_url() -> str:
    url = config.attributes.get("database_url") or get_settings().database_url
    assert url is not None
    return url


def _render_item(kind: str, obj: Any, _autogen_context: Any) -> str | Literal[False]:
    # Revisions must not import application code that later changes: write the plain type.
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        with _sqlite_foreign_keys_off(connection):
            _migrate(connection)
    else:
        _migrate(connection)


@contextlib.contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """A batch migration rebuilds a table (copy, drop, rename); with foreign keys on, the
    drop of a parent table would first delete every child row through ON DELETE CASCADE.

    SQLite takes the pragma only outside a transaction, so it must come before the first
    write; the keys are checked once the migrations are done."""
    dbapi = connection.connection.dbapi_connection
    if getattr(dbapi, "in_transaction", False):
        raise RuntimeError("migrate SQLite on a connection that has not written yet")
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"the migration left rows without their parent: {broken[:5]}")
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode lets later revisions rebuild tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_database_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
