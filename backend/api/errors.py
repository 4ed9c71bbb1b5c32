"""Error answers that say exactly what the OpenAPI document says they do.

* 422 bodies carry the offending input, which may be NaN or infinity (JSON numbers as
  Python reads them): those are written as strings, since JSON has no such numbers.
* A 405 lists in ``Allow`` every method of the path, not only those of the first route
  that matched it (``/experiments`` is one path served by two routes).
* Every route that reads a body documents the 400 FastAPI gives for one it cannot read
  (not UTF-8, say), and every route the 405 for a method the path does not serve.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from backend.services.experiments import SubmissionError

UNREADABLE_BODY = {400: {"description": "a body that cannot be read (not UTF-8 JSON)"}}
WRONG_METHOD = {
    405: {"description": "the path does not serve this method; `Allow` lists those it does"}
}


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity written as a string ("nan", "inf", "-inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _unprocessable(errors: Any) -> JSONResponse:
    return JSONResponse(
        {"detail": json_safe(jsonable_encoder(errors))},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _unprocessable(exc.errors())


async def _submission_error(_request: Request, exc: Exception) -> JSONResponse:
    # The same shape as FastAPI's own request validation errors.
    assert isinstance(exc, SubmissionError)
    return _unprocessable(exc.errors)


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods some route serves at the request's path (routers nest, so each method
    is tried against the whole tree)."""
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in app.router.routes
        )
    ]


def install(app: FastAPI) -> None:
    """The handlers above, and the 400 and 405 in each operation's documented responses."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            allowed = _allowed_methods(app, request)
            if allowed:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        return await http_exception_handler(request, exc)

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(SubmissionError, _submission_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    document = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = document()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    answers = operation.setdefault("responses", {})
                    if "requestBody" in operation:
                        answers.setdefault("400", UNREADABLE_BODY[400])
                    answers.setdefault("405", WRONG_METHOD[405])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
