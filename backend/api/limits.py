"""Serving many requests at once without a 500: a turn per request, and 503 when saturated.

A request served holds at most one thread (FastAPI runs the synchronous handlers and
dependencies in anyio's thread pool) and one database connection at a time. Requests in
excess wait for a turn here, holding neither, so no request waits on the connection pool:
the pool holds ``api_concurrency`` connections and more (see ``Settings``). A server that
cannot give a turn soon answers 503 with ``Retry-After``, as does a request that waited
``db_pool_timeout_s`` for a connection all the same (a slow or restarting database).
"""

from __future__ import annotations

import anyio
from anyio import to_thread
from fastapi import Request, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.settings import Settings, get_settings


def busy(detail: str, settings: Settings) -> JSONResponse:
    return JSONResponse(
        {"detail": detail},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(settings.retry_after_s)},
    )


def size_thread_pool(settings: Settings) -> None:
    """Threads for the synchronous handlers: one per request served at once."""
    to_thread.current_default_thread_limiter().total_tokens = settings.api_concurrency


class ConcurrencyLimit:
    """At most ``api_concurrency`` requests served at once; up to ``api_max_waiting`` more
    wait up to ``api_wait_timeout_s`` for a turn; any other gets 503 with ``Retry-After``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._limiter: anyio.CapacityLimiter | None = None
        self._waiting = 0

    def _turns(self, settings: Settings) -> anyio.CapacityLimiter:
        # Made on first use: a limiter belongs to the running event loop.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(settings.api_concurrency)
        return self._limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        turns = self._turns(settings)
        if turns.available_tokens == 0 and self._waiting >= settings.api_max_waiting:
            detail = (
                f"the server is saturated: {turns.borrowed_tokens} requests served and "
                f"{self._waiting} waiting; retry after {settings.retry_after_s} s"
            )
            await busy(detail, settings)(scope, receive, send)
            return
        self._waiting += 1
        try:
            with anyio.fail_after(settings.api_wait_timeout_s):
                await turns.acquire()
        except TimeoutError:
            detail = (
                f"the server is saturated: no turn within {settings.api_wait_timeout_s:g} s; "
                f"retry after {settings.retry_after_s} s"
            )
            await busy(detail, settings)(scope, receive, send)
            return
        finally:
            self._waiting -= 1
        try:
            await self.app(scope, receive, send)
        finally:
            turns.release()


async def pool_timeout(_request: Request, _exc: Exception) -> JSONResponse:
    """SQLAlchemy's pool ``TimeoutError``: no connection within ``db_pool_timeout_s``."""
    settings = get_settings()
    detail = (
        f"no database connection free within {settings.db_pool_timeout_s:g} s; "
        f"retry after {settings.retry_after_s} s"
    )
    return busy(detail, settings)
