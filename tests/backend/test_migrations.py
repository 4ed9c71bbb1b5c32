from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from backend.db import make_engine, upgrade_database
from backend.models import Base


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_the_migrations_create_exactly_what_the_models_declare(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade_database(url)
    assert _diff(url) == []


def test_a_table_the_migrations_miss_is_reported(tmp_path: Path) -> None:
    # Guards the test above: compare_metadata does see a difference when there is one.
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    Base.metadata.tables["users"].create(engine)
    engine.dispose()
    diffs = _diff(url)
    assert {d[1].name for d in diffs if d[0] == "add_table"} >= {"runs", "metrics"}


def test_upgrading_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade_database(url)
    upgrade_database(url)
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert tables == {*Base.metadata.tables, "alembic_version"}


_UPGRADE_AT = """
import sys, time
from backend.db import upgrade_database
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
upgrade_database(sys.argv[1])
"""


def test_processes_that_start_together_each_upgrade_without_error(tmp_path: Path) -> None:
    # The API and the worker migrate at startup, often at the same moment; without the
    # migration lock all but one of these fail with "table ... already exists".
    url = f"sqlite:///{tmp_path / 'm.db'}"
    start = str(time.time() + 4)  # after every interpreter has started
    procs = [
        subprocess.Popen([sys.executable, "-c", _UPGRADE_AT, url, start], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
    assert _diff(url) == []


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")  # creates the folder
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()
