"""Fixtures for the dashboard tests: the real API (``tests/live_api.py``) with runs that hold
real results (``real_runs.py``), and AppTest drivers pointed at it.

One API server and one set of runs serve the whole session; each test reads the runs it is
about by id (or narrows the runs table to their experiment), and a test that changes runs
(cancel, retry, submit) creates its own first. Each test starts with empty Streamlit caches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from backend.processes import free_port
from tests.dashboard import real_runs
from tests.dashboard.apptest import APP as APP  # the dashboard tests import it from here
from tests.dashboard.apptest import signed_in_app
from tests.live_api import LiveApi, Request, serve_live_api


def unused_port() -> int:
    """A loopback port nothing listens on (an API that is down)."""
    return free_port()


@dataclass(frozen=True)
class Seeded:
    """The session's runs: a real sweep, one run per state and a large run."""

    sweep: real_runs.Sweep
    states: real_runs.States
    large_run: int


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """The session's API server, shared by every dashboard test."""
    with serve_live_api(tmp_path_factory.mktemp("live-dashboard") / "home") as api:
        yield api


@pytest.fixture(scope="session")
def seeded(live_server: LiveApi) -> Seeded:
    api = live_server
    return Seeded(
        sweep=real_runs.make_sweep(api),
        states=real_runs.make_states(api),
        large_run=real_runs.make_large_run(api),
    )


@dataclass
class Dashboard:
    """The API a test's dashboard talks to, and what the test asked of it."""

    api: LiveApi
    runs: Seeded
    log_start: int

    def requests(self) -> list[Request]:
        return self.api.requests(since=self.log_start)

    def asked(self, path_end: str, **params: str) -> bool:
        """Whether some request of this test to ``path_end`` carried all of ``params``."""
        return any(
            r.path.endswith(path_end) and params.items() <= r.query.items() for r in self.requests()
        )

    def queries(self, path_end: str) -> list[dict[str, str]]:
        return [r.query for r in self.requests() if r.path.endswith(path_end)]


def point_dashboard_at(
    monkeypatch: pytest.MonkeyPatch, home: Path, url: str, token: str | None
) -> None:
    # An empty state directory: no token file to fall back on unless a test writes one.
    monkeypatch.setenv("TAPFL_HOME", str(home))
    monkeypatch.setenv("TAPFL_API_URL", url)
    if token is None:
        monkeypatch.delenv("TAPFL_TOKEN", raising=False)
    else:
        monkeypatch.setenv("TAPFL_TOKEN", token)
    # Cached answers from a previous test must not leak into this one.
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def dashboard(
    live_server: LiveApi,
    seeded: Seeded,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Dashboard:
    """The dashboard's environment and caches pointed at the session's API."""
    api = live_server
    point_dashboard_at(monkeypatch, tmp_path_factory.mktemp("home"), api.url, api.admin_token)
    return Dashboard(api, seeded, api.log_size())


@pytest.fixture(scope="session")
def empty_live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """A second API without any run; tests must not add any."""
    with serve_live_api(tmp_path_factory.mktemp("live-empty") / "home") as api:
        yield api


@pytest.fixture
def empty_dashboard(
    empty_live_api: LiveApi,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> LiveApi:
    api = empty_live_api
    point_dashboard_at(monkeypatch, tmp_path_factory.mktemp("home"), api.url, api.admin_token)
    return api


def render(page: str | None = None, **query: str) -> AppTest:
    """Run the app, switch to ``page`` (with query params) and return the rendered AppTest."""
    at = signed_in_app()
    at.run()
    if page is not None:
        at.switch_page(page)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def open_page(dashboard: Dashboard) -> Callable[..., AppTest]:
    """``render`` against the session's API."""
    return render
