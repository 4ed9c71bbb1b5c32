"""The transport under ``TapflClient``: one httpx client, the errors every call raises, and
the paging of list endpoints.

A failed call raises ``ApiError`` carrying the HTTP status and the API's ``detail``, so a
caller can put a validation message next to the field it is about (``field_errors``), or
say plainly that the API is down (``ApiUnreachable``) or refused the token
(``Unauthorized``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

API_PREFIX = "/api/v1"
PAGE_LIMIT = 10_000  # rows per request when a method reads every row of a run


class ApiError(Exception):
    """A call to the tapfl API failed; ``status`` is None when no HTTP answer came back.

    ``detail`` is FastAPI's: a string, or for 422 the list of errors with their field paths.
    """

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail

    def field_errors(self) -> dict[str, list[str]]:
        """FastAPI validation messages keyed by where in the request body they point.

        ``{"loc": ["body", "overrides", "rounds"], "msg": ...}`` is keyed
        ``"overrides.rounds"``; list indices are dropped (``sweep.seed``, not
        ``sweep.seed.1``) and messages about the body as a whole go under ``""``.
        A string ``detail`` (not a validation list) also goes under ``""``.
        """
        errors: dict[str, list[str]] = {}
        if isinstance(self.detail, list):
            for item in self.detail:
                if not isinstance(item, Mapping):
                    continue
                loc = [str(part) for part in item.get("loc", []) if not isinstance(part, int)]
                if loc and loc[0] == "body":
                    loc = loc[1:]
                errors.setdefault(".".join(loc), []).append(str(item.get("msg", item)))
        elif self.detail:
            errors[""] = [str(self.detail)]
        return errors


class ApiUnreachable(ApiError):
    """No HTTP answer at all: the API is not running, not at that address, or timed out."""


class Unauthorized(ApiError):
    """401/403: the token is missing, wrong, or not allowed to do this."""


def format_detail(detail: Any) -> str:
    """A ``detail`` as one line; validation errors as ``body.overrides.rounds: message``."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', e)}"
            if isinstance(e, Mapping)
            else str(e)
            for e in detail
        )
    return "" if detail is None else str(detail)


def drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    # The API reads an empty query parameter as a value; leave unset filters out instead.
    return {key: value for key, value in params.items() if value is not None and value != ""}


# A saturated API answers 503 with Retry-After before it does anything: reads are asked
# again after the wait it names (writes are not, so that nothing is done twice).
BUSY_RETRIES = 3
RETRIED_METHODS = frozenset({"GET", "HEAD"})
MAX_BUSY_WAIT_S = 10.0


def busy_wait_s(response: httpx.Response) -> float | None:
    """The seconds a 503 with ``Retry-After`` asks to wait (at most ``MAX_BUSY_WAIT_S``);
    None for any other answer (a degraded ``/health`` is a 503 without it)."""
    if response.status_code != 503:
        return None
    try:
        return min(max(float(response.headers["Retry-After"]), 0.0), MAX_BUSY_WAIT_S)
    except (KeyError, ValueError):
        return None


class Http:
    """Requests under ``{base_url}/api/v1`` with the bearer token, errors raised as above."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # connect refused, DNS, timeouts, resets
            raise ApiUnreachable(
                f"cannot reach the API at {self.base_url} ({type(exc).__name__}: {exc})"
            ) from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                f"{method} {API_PREFIX}{path}: the API answered {response.status_code} "
                "with non-JSON",
                status=response.status_code,
            ) from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.json("GET", path, params=drop_none(params))

    def all_items(self, path: str, params: Mapping[str, Any]) -> list[Any]:
        """Every item of a paged list (``{"items", "total"}``), page after page."""
        # Page until the API's total is reached; an empty page ends it in any case, so a
        # total that grows while a run writes rows cannot loop forever.
        items: list[Any] = []
        while True:
            page = self.get(path, **params, limit=PAGE_LIMIT, offset=len(items))
            items.extend(page["items"])
            if not page["items"] or len(items) >= page.get("total", len(items)):
                return items

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._request(method, path, **kwargs)
        for _ in range(BUSY_RETRIES if method in RETRIED_METHODS else 0):
            wait = busy_wait_s(response)
            if wait is None:
                break
            time.sleep(wait)
            response = self._request(method, path, **kwargs)
        if response.is_success:
            return response
        detail = _detail_of(response)
        where = f"{method} {API_PREFIX}{path}"
        message = f"{where}: HTTP {response.status_code}: {format_detail(detail)}"
        if response.status_code in (401, 403):
            raise Unauthorized(message, status=response.status_code, detail=detail)
        raise ApiError(message, status=response.status_code, detail=detail)


def _detail_of(response: httpx.Response) -> Any:
    """FastAPI's ``detail`` (a string or a list of validation errors), else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase or None
    if isinstance(body, Mapping) and "detail" in body:
        return body["detail"]
    return body
