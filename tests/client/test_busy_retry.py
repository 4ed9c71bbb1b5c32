"""A saturated API's 503 with Retry-After: the client asks a read again after the wait it
names, never a write, and never a 503 without Retry-After (a degraded ``/health``). The
server side (which answers so) is tested in ``tests/backend/test_concurrency.py``."""

from __future__ import annotations

import httpx
import pytest

from backend.client import http
from backend.client.http import ApiError, Http


def busy_then_ok(busy: int, retry_after: str | None = "2") -> tuple[httpx.MockTransport, list]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= busy:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return httpx.Response(503, json={"detail": "busy"}, headers=headers)
        return httpx.Response(200, json={"ok": True})

    return httpx.MockTransport(answer), seen


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(http.time, "sleep", slept.append)
    return slept


def test_a_read_is_asked_again_after_the_wait_the_api_names(waits: list[float]) -> None:
    transport, seen = busy_then_ok(busy=2)
    assert Http("http://api", "t", timeout=5, transport=transport).get("/runs") == {"ok": True}
    assert len(seen) == 3 and waits == [2.0, 2.0]


def test_a_long_retry_after_is_capped_and_retries_end(waits: list[float]) -> None:
    transport, seen = busy_then_ok(busy=10, retry_after="3600")
    with pytest.raises(ApiError) as err:
        Http("http://api", "t", timeout=5, transport=transport).get("/runs")
    assert err.value.status == 503
    assert len(seen) == 1 + http.BUSY_RETRIES
    assert waits == [http.MAX_BUSY_WAIT_S] * http.BUSY_RETRIES


def test_a_write_is_never_sent_twice(waits: list[float]) -> None:
    transport, seen = busy_then_ok(busy=1)
    with pytest.raises(ApiError):
        Http("http://api", "t", timeout=5, transport=transport).json("POST", "/experiments")
    assert len(seen) == 1 and waits == []


def test_a_503_without_retry_after_is_answered_at_once(waits: list[float]) -> None:
    transport, seen = busy_then_ok(busy=1, retry_after=None)
    with pytest.raises(ApiError):
        Http("http://api", "t", timeout=5, transport=transport).get("/health")
    assert len(seen) == 1 and waits == []
