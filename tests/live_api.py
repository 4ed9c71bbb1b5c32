"""A real API server for the tests of its clients (the Python client, the CLI, the
dashboard): uvicorn in its own process, SQLite in a temporary home, the bootstrap admin
token. No worker runs and Redis is down: submitted runs stay queued, and tests that need
results run the worker's code in the test process against the server's database
(``tests/dashboard/real_runs.py``) or change run rows through the backend services.

``live_api`` gives each test module its own server; ``serve_live_api`` starts one for other
scopes (the dashboard tests share one per session, each test keeping to its own runs).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.db import dispose_engines, session_factory
from backend.processes import free_port, stop_process, wait_for_http
from tests.conftest import clean_env

# uvicorn's access log line: 127.0.0.1:5555 - "GET /api/v1/runs?status=failed HTTP/1.1" 200
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass
class LiveApi:
    url: str
    admin_token: str
    database_url: str
    home: Path
    log: Path

    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.database_url)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One authenticated call as the admin; the JSON answer of a 2xx, else it fails."""
        response = httpx.request(
            method,
            f"{self.url}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
            **kwargs,
        )
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def log_size(self) -> int:
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[Request]:
        """The requests the server logged, from byte ``since`` of its log on."""
        with self.log.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        found = []
        for match in ACCESS_LINE.finditer(text):
            target = urlsplit(match["target"])
            query = dict(parse_qsl(target.query, keep_blank_values=True))
            found.append(Request(match["method"], target.path, query, int(match["status"])))
        return found


@contextmanager
def serve_live_api(home: Path) -> Iterator[LiveApi]:
    """Start the API on a free port with its state in ``home``; stop it afterwards."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    database_url = f"sqlite:///{home / 'tapfl.db'}"
    env = clean_env(
        TAPFL_HOME=str(home),
        TAPFL_DATABASE_URL=database_url,
        TAPFL_RECONCILE_INTERVAL_S="0",
        TAPFL_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # down: runs stay queued
    )
    log = home / "uvicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/v1/openapi.json", proc=proc, name="uvicorn")
        token = (home / "token").read_text().strip()
        yield LiveApi(url, token, database_url, home, log)
    finally:
        stop_process(proc)
        dispose_engines()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with serve_live_api(tmp_path_factory.mktemp("live") / "home") as api:
        yield api
