"""The lifecycle on PostgreSQL (what compose deploys): migrations over existing data, and
runs claimed and reconciled by racing processes' sessions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from backend.db import alembic_config, dispose_engines, session_factory, upgrade_database
from backend.models import Run, utcnow
from backend.services import reconciler, runs
from backend.services.leases import Lease
from backend.settings import Settings
from tests.backend.conftest import FakeQueue, add_run
from tests.backend.test_migrations import _diff

# Each test picks its databases itself; the settings fixture's own database stays SQLite.
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A fresh database on the shared server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = postgres_url.replace("/postgres?", f"/{name}?", 1)
    try:
        yield url
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def _upgrade_over_old_rows(url: str) -> None:
    config = alembic_config(url)
    config.attributes["configure_logging"] = False
    command.upgrade(config, "0001")
    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO users (id, name, token_hash, is_admin, created_at) "
                "VALUES (1, 'old', 'h', true, CURRENT_TIMESTAMP)"
            )
        )
        db.execute(
            text(
                "INSERT INTO experiments (id, name, preset, owner_id, spec, created_at) "
                "VALUES (7, 'e', 'demo', 1, '{}', CURRENT_TIMESTAMP)"
            )
        )
        for run_id, started in ((1, "NULL"), (2, "CURRENT_TIMESTAMP")):
            db.execute(
                text(
                    "INSERT INTO runs (id, experiment_id, algorithm, seed, config, status, round, "
                    "total_rounds, progress, created_at, started_at) VALUES "
                    f"({run_id}, 7, 'fedavg', 1, '{{}}', 'queued', 0, 3, 0, CURRENT_TIMESTAMP, "
                    f"{started})"
                )
            )
    upgrade_database(url)
    with engine.connect() as db:
        rows = db.execute(
            text(
                "SELECT id, group_id, attempt, recoveries, queued_at IS NOT NULL FROM runs "
                "ORDER BY id"
            )
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        (1, "experiment-7", 0, 0, True),
        (2, "experiment-7", 1, 0, True),
    ]
    assert _diff(url) == []
    command.downgrade(config, "0001")  # and back, for a rollback of a bad release
    command.upgrade(config, "head")


def test_migrating_existing_runs_on_postgresql(database: str) -> None:
    _upgrade_over_old_rows(database)


def test_migrating_existing_runs_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _upgrade_over_old_rows(f"sqlite:///{tmp_path / 'old.db'}")


@pytest.fixture
def pg_sessions(database: str, settings: Settings) -> sessionmaker[Session]:
    upgrade_database(database)
    return session_factory(database)


def test_racing_claims_and_reconcilers_on_postgresql(
    pg_sessions: sessionmaker[Session], settings: Settings
) -> None:
    with pg_sessions() as session:
        run_id = add_run(session).id
    start = threading.Barrier(6)

    def claim(i: int) -> bool:
        owner = runs.Owner(f"w{i}", Lease(f"host{i}", "boot", "ns", 100 + i, "1").encode())
        start.wait()
        with pg_sessions() as session:
            return (
                runs.claim_run(
                    session,
                    run_id,
                    owner,
                    task_id=f"m{i}",
                    heartbeat_timeout_s=30,
                    max_recoveries=3,
                )
                is not None
            )

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(claim, range(6))).count(True) == 1

    with pg_sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.heartbeat_at = utcnow() - timedelta(seconds=31)
        session.commit()
    settings.heartbeat_timeout_s = 30
    queue = FakeQueue()

    def reconcile(_: int) -> list[int]:
        start.wait()
        with pg_sessions() as session:
            return reconciler.reconcile_once(session, queue, settings).requeued

    with ThreadPoolExecutor(6) as pool:
        requeued = list(pool.map(reconcile, range(6)))
    assert sorted(map(len, requeued)) == [0, 0, 0, 0, 0, 1]
    assert queue.sent == [(run_id, "auto")]
    with pg_sessions() as session:
        history = [(t.from_status, t.to_status) for t in runs.transitions(session, run_id)]
    assert history == [("queued", "running"), ("running", "queued")]
