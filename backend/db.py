"""Engines, sessions and migrations, shared by the API and the worker.

SQLite is the embedded default and PostgreSQL (``postgresql+psycopg://``) the scaled-out
one; nothing here or in the services uses features only one of them has.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from backend.settings import get_settings

ALEMBIC_INI = Path(__file__).parent / "alembic.ini"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant will do: it names the PostgreSQL advisory lock that serialises migrations.
_MIGRATION_LOCK_KEY = 0x7AF1


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str) -> Engine:
    """An engine whose pool serves ``api_concurrency`` requests at once (see settings)."""
    settings = get_settings()
    pool: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
    }
    path = sqlite_path(url)
    if path is None:
        if make_url(url).get_backend_name() == "sqlite":  # in memory: one shared connection
            return create_engine(url)
        return create_engine(url, pool_pre_ping=True, **pool)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30}, **pool)
    event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # The API and the worker write the same file from different processes: WAL lets readers
    # go on during a write, and the busy timeout makes a writer wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a commit no longer fsyncs
    cursor.close()


_engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """One pooled engine per URL for the life of the process."""
    return _cached(url)[0]


def _cached(url: str) -> tuple[Engine, sessionmaker[Session]]:
    with _engines_lock:
        if url not in _engines:
            engine = make_engine(url)
            _engines[url] = (engine, sessionmaker(engine, expire_on_commit=False))
        return _engines[url]


def get_engine() -> Engine:
    return engine_for(get_settings().database_url)


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """Sessions on the database at ``url``, by default that of the current settings."""
    return _cached(url or get_settings().database_url)[1]


def get_session() -> Iterator[Session]:
    """The FastAPI dependency behind ``SessionDep``: one session per request."""
    with session_factory()() as session:
        yield session


def dispose_engines(close: bool = True) -> None:
    """Forget every engine; ``close=False`` after a fork leaves the parent's sockets alone."""
    with _engines_lock:
        for engine, _ in _engines.values():
            engine.dispose(close=close)
        _engines.clear()


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["database_url"] = url
    return config


def upgrade_database(url: str) -> None:
    """``alembic upgrade head`` on ``url``; safe when the API and worker start together."""
    config = alembic_config(url)
    config.attributes["configure_logging"] = False  # keep the host process's logging as is
    engine = make_engine(url)
    try:
        with _migration_lock(url), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


@contextlib.contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """An exclusive file lock next to a SQLite database (PostgreSQL locks in SQL instead)."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
