"""The FastAPI app: ``uvicorn backend.main:app``.

At startup it brings the database schema to the newest migration and makes sure the
bootstrap admin token exists, so a fresh ``TAPFL_HOME`` needs no setup step. While it runs,
a thread reconciles SQL with the broker every ``TAPFL_RECONCILE_INTERVAL_S`` seconds
(``backend.services.reconciler``): runs of lost workers and lost messages are queued again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, status
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api import errors
from backend.api.limits import ConcurrencyLimit, pool_timeout, size_thread_pool
from backend.api.main import api_router
from backend.auth import ensure_bootstrap_token
from backend.db import session_factory, upgrade_database
from backend.queue import celery_run_queue
from backend.services.reconciler import ReconcilerThread
from backend.settings import get_settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    size_thread_pool(settings)
    upgrade_database(settings.database_url)
    ensure_bootstrap_token(settings)
    reconciler = None
    if settings.reconcile_interval_s > 0:
        reconciler = ReconcilerThread(
            session_factory(settings.database_url),
            celery_run_queue(settings.redis_url),
            settings,
            settings.reconcile_interval_s,
        )
        reconciler.start()
    log.info("tapfl API ready; admin token in %s", settings.token_file)
    try:
        yield
    finally:
        if reconciler is not None:
            reconciler.stop()


class BodySizeLimit:
    """413 for request bodies over ``max_body_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                # FastAPI re-raises HTTPExceptions from body reading, so this becomes the 413.
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _too_large_text(limit))
            return message

        await self.app(scope, counting_receive, send)


def _too_large_text(limit: int) -> str:
    return f"request body larger than {limit} bytes"


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"detail": _too_large_text(limit)}, status_code=status.HTTP_413_CONTENT_TOO_LARGE
    )


def create_app() -> FastAPI:
    app = FastAPI(
        title="tapfl",
        summary="Federated personalization experiments (TAP and baselines) as a service.",
        version="1.0.0",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.include_router(api_router, prefix=API_PREFIX)
    errors.install(app)
    app.add_exception_handler(PoolTimeoutError, pool_timeout)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(ConcurrencyLimit)  # outermost: a waiting request holds nothing
    return app


app = create_app()
