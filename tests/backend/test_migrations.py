from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from backend.db import alembic_config, make_engine, upgrade_database
from backend.models import Base
from tap_engine.config import RunConfig, resolve_config
from tests.backend.conftest import fresh_postgres_database


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


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


def _old_demo_config(post_steps: int, grad_accum: int | None) -> dict[str, Any]:
    """The demo's resolved config as the engine stored it before post_iterations."""
    config = resolve_config("demo").model_dump(mode="json")
    config.pop("post_iterations")
    config["post_steps"] = post_steps
    if grad_accum is None:
        config.pop("grad_accum")  # written before the field existed: its default applies
    else:
        config["grad_accum"] = grad_accum
    return config


def _stored_configs(url: str) -> dict[int, dict[str, Any]]:
    engine = make_engine(url)
    with engine.connect() as db:
        rows = db.execute(text("SELECT id, config FROM runs ORDER BY id")).all()
    engine.dispose()
    return {i: c if isinstance(c, dict) else json.loads(c) for i, c in rows}


def test_upgrading_rewrites_post_steps_so_stored_runs_keep_their_stage_two(
    empty_database: str,
) -> None:
    url = empty_database
    config = alembic_config(url)
    config.attributes["configure_logging"] = False
    command.upgrade(config, "0003")
    old = {
        1: _old_demo_config(post_steps=5, grad_accum=2),
        2: _old_demo_config(post_steps=3, grad_accum=None),
        3: {"rounds": 2, "post_iterations": 7, "name": "post_steps"},  # only as a value
    }
    engine = make_engine(url)
    with engine.begin() as db:
        for insert in (
            "INSERT INTO users (id, name, token_hash, is_admin, created_at) "
            "VALUES (1, 'old', 'h', true, CURRENT_TIMESTAMP)",
            "INSERT INTO experiments (id, name, preset, owner_id, spec, created_at) "
            "VALUES (7, 'e', 'demo', 1, '{}', CURRENT_TIMESTAMP)",
        ):
            db.execute(text(insert))
        for run_id, stored in old.items():
            db.execute(
                text(
                    "INSERT INTO runs (id, experiment_id, algorithm, seed, config, status, "
                    "round, total_rounds, progress, created_at, group_id) VALUES "
                    "(:id, 7, 'tap', 1, :config, 'succeeded', 0, 2, 1, CURRENT_TIMESTAMP, 'g')"
                ),
                {"id": run_id, "config": json.dumps(stored)},
            )
    engine.dispose()

    upgrade_database(url)
    new = _stored_configs(url)
    assert (new[1]["post_iterations"], new[1]["grad_accum"]) == (10, 2)
    assert new[2]["post_iterations"] == 12  # grad_accum's default: 4
    assert new[3] == old[3]
    for run_id in (1, 2):
        assert "post_steps" not in new[run_id]
        # In the old key's place, everything else as it was.
        assert list(new[run_id]) == [
            "post_iterations" if k == "post_steps" else k for k in old[run_id]
        ]
        # What the worker does with a stored config before it runs it.
        RunConfig.model_validate(new[run_id])
    assert _diff(url) == []

    command.downgrade(config, "0003")
    back = _stored_configs(url)
    assert (back[1]["post_steps"], back[2]["post_steps"]) == (5, 3)
    assert "post_iterations" not in back[1] and "post_steps" in back[3]
    assert back[3]["post_steps"] == 2  # ceil(7 / 4)
    engine = make_engine(url)
    assert "training_steps" not in inspect(engine).get_table_names()
    engine.dispose()


def test_the_autoincrement_rebuild_keeps_every_row_and_its_children(tmp_path: Path) -> None:
    # Rebuilding a parent table with foreign keys on would cascade-delete its children.
    url = f"sqlite:///{tmp_path / 'm.db'}"
    config = alembic_config(url)
    config.attributes["configure_logging"] = False
    command.upgrade(config, "0004")
    engine = make_engine(url)
    rows = {
        "users": "(id, name, token_hash, is_admin, created_at) VALUES (1, 'u', 'h', 1, 0)",
        "experiments": "(id, name, preset, owner_id, spec, created_at) "
        "VALUES (1, 'e', 'demo', 1, '{}', 0)",
        "runs": "(id, experiment_id, algorithm, seed, config, status, round, total_rounds, "
        "progress, created_at, group_id, attempt, recoveries) "
        "VALUES (1, 1, 'tap', 1, '{}', 'succeeded', 0, 3, 0, 0, 'g', 0, 0)",
        "metrics": "(run_id, round, stage, client, task, model, split, metric, value, n) "
        "VALUES (1, 1, 'fl', 0, 't', 'global', 'local', 'accuracy', 0.5, 3)",
        "run_logs": "(run_id, time, level, source, attempt, message) "
        "VALUES (1, 0, 'INFO', 'api', 0, 'hi')",
    }
    with engine.begin() as db:
        for table, values in rows.items():
            db.execute(text(f"INSERT INTO {table} {values}"))
    engine.dispose()
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            counts = {t: db.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in rows}
            schemas = db.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table'"))
            autoincrement = {sql.split("(")[0].split()[-1].strip('"'): "AUTOINCREMENT" in sql
                             for (sql,) in schemas}  # fmt: skip
    finally:
        engine.dispose()
    assert counts == dict.fromkeys(rows, 1)
    assert {t: autoincrement[t] for t in Base.metadata.tables} == dict.fromkeys(
        Base.metadata.tables, True
    )
    assert _diff(url) == []


def test_round_traffic_arrives_with_0007_and_leaves_with_its_downgrade(
    empty_database: str,
) -> None:
    url = empty_database
    config = alembic_config(url)
    config.attributes["configure_logging"] = False
    command.upgrade(config, "0006")
    engine = make_engine(url)
    assert "round_traffic" not in inspect(engine).get_table_names()
    with engine.begin() as db:
        db.execute(text("INSERT INTO users (name, token_hash, is_admin, created_at) "
                        "VALUES ('u', 'h', true, CURRENT_TIMESTAMP)"))  # fmt: skip
        db.execute(text("INSERT INTO experiments (name, preset, owner_id, spec, created_at) "
                        "SELECT 'e', 'demo', id, '{}', CURRENT_TIMESTAMP FROM users"))  # fmt: skip
        db.execute(text(
            "INSERT INTO runs (experiment_id, algorithm, seed, config, status, round, "
            "total_rounds, progress, created_at, group_id, attempt, recoveries) "
            "SELECT id, 'fedavg', 1, '{}', 'succeeded', 3, 3, 1, CURRENT_TIMESTAMP, 'g', 0, 0 "
            "FROM experiments"))  # fmt: skip
    engine.dispose()
    upgrade_database(url)
    assert _diff(url) == []
    engine = make_engine(url)
    with engine.begin() as db:
        db.execute(text(
            "INSERT INTO round_traffic (run_id, round, client, direction, bytes, parameters) "
            "SELECT id, 1, 0, 'down', 10000000000, 2500000000 FROM runs"))  # fmt: skip
        assert db.execute(text("SELECT bytes FROM round_traffic")).scalar() == 10_000_000_000
    engine.dispose()
    command.downgrade(config, "0006")
    engine = make_engine(url)
    try:
        assert "round_traffic" not in inspect(engine).get_table_names()
        with engine.connect() as db:
            assert db.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    finally:
        engine.dispose()
