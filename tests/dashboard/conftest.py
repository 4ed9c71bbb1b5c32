"""Fixtures for the dashboard tests: a fake tapfl API on loopback and AppTest drivers."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboard.fake_tapfl_api import FakeApi, serve

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeApi]:
    with serve(unused_port()) as api:
        yield api


@pytest.fixture
def fake_api(
    fake_server: FakeApi, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> FakeApi:
    """The fake API with freshly seeded runs; the dashboard's env and caches point at it."""
    fake_server.reset()
    # An empty state directory: no token file to fall back on unless a test writes one.
    monkeypatch.setenv("TAPFL_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("TAPFL_API_URL", fake_server.url)
    monkeypatch.setenv("TAPFL_TOKEN", fake_server.token)
    # Cached answers from a previous test's state must not leak into this one.
    st.cache_data.clear()
    st.cache_resource.clear()
    return fake_server


@pytest.fixture
def open_page(fake_api: FakeApi) -> Callable[..., AppTest]:
    """Run the app, switch to ``page`` (with query params) and return the rendered AppTest."""

    def open_(page: str | None = None, **query: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=30)
        at.run()
        if page is not None:
            at.switch_page(page)
        at.query_params.update(query)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_
