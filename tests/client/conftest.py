"""A real API server (uvicorn in its own process, SQLite in a temporary home) for the
client and CLI tests. No worker runs: submitted runs stay queued, and tests that need
results write the rows a worker would write straight into the server's database."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.db import dispose_engines, session_factory
from backend.processes import free_port, stop_process, wait_for_http
from tests.conftest import clean_env


@dataclass
class LiveApi:
    url: str
    admin_token: str
    database_url: str
    home: Path
    log: Path

    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.database_url)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    home = tmp_path_factory.mktemp("live") / "home"
    home.mkdir()
    port = free_port()
    database_url = f"sqlite:///{home / 'tapfl.db'}"
    env = clean_env(
        TAPFL_HOME=str(home), TAPFL_DATABASE_URL=database_url, TAPFL_RECONCILE_INTERVAL_S="0",
        TAPFL_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # down: runs stay queued
    )  # fmt: skip
    log = home / "uvicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/v1/openapi.json", proc=proc, name="uvicorn")
        token = (home / "token").read_text().strip()
        yield LiveApi(url, token, database_url, home, log)
    finally:
        stop_process(proc)
        dispose_engines()
