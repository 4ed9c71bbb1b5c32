"""A saturated API answers 503 with Retry-After, never 500 (backend/api/limits.py)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from backend.api.limits import ConcurrencyLimit
from backend.db import dispose_engines, session_factory
from backend.settings import Settings
from tests.backend.conftest import Api


def test_a_request_that_finds_no_free_connection_gets_503_with_retry_after(
    api: Api, settings: Settings
) -> None:
    settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout_s = 1, 0, 0.2
    dispose_engines()  # the next engine gets the one-connection pool
    with session_factory()() as holder:
        holder.connection()  # the pool's only connection, held
        response = api.get("/api/v1/runs")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(settings.retry_after_s)
    assert "no database connection free within 0.2 s" in response.json()["detail"]
    assert api.get("/api/v1/runs").status_code == 200  # and served once one is free


def _slow_app(release: anyio.Event) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _two_requests(settings: Settings) -> tuple[int, httpx.Response]:
    release = anyio.Event()
    transport = httpx.ASGITransport(app=ConcurrencyLimit(_slow_app(release)))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        first: list[int] = []

        async def serve_first() -> None:
            first.append((await client.get("/")).status_code)

        async with anyio.create_task_group() as group:
            group.start_soon(serve_first)
            await anyio.sleep(0.05)  # the first holds the only turn
            second = await client.get("/")
            release.set()
    return first[0], second


@pytest.mark.sqlite_only  # no database involved
def test_a_request_beyond_the_waiting_room_gets_503_with_retry_after_at_once(
    settings: Settings,
) -> None:
    settings.api_concurrency, settings.api_max_waiting = 1, 0
    first, second = anyio.run(_two_requests, settings)
    assert first == 200
    assert second.status_code == 503 and second.headers["Retry-After"] == "2"
    assert "1 requests served and 0 waiting" in second.json()["detail"]


@pytest.mark.sqlite_only
def test_a_request_that_waits_too_long_for_a_turn_gets_503(settings: Settings) -> None:
    settings.api_concurrency, settings.api_max_waiting = 1, 10
    settings.api_wait_timeout_s = 0.1
    first, second = anyio.run(_two_requests, settings)
    assert first == 200
    assert second.status_code == 503 and "no turn within 0.1 s" in second.json()["detail"]


def test_the_pool_is_sized_to_the_requests_served_at_once() -> None:
    derived = Settings(api_concurrency=10)
    assert derived.db_pool_size == 14
    assert Settings(api_concurrency=10, db_pool_size=3, db_max_overflow=7).db_pool_size == 3
    with pytest.raises(ValidationError, match="must be at least api_concurrency"):
        Settings(api_concurrency=10, db_pool_size=3, db_max_overflow=2)
