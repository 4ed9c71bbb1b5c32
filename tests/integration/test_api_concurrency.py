"""Many requests at once against a real API server (uvicorn, SQLite): none gets a 5xx.

200 concurrent reads, not the 500 of ``benchmarks/api_load.py`` (whose figures are in
docs/API.md): on CI's 2 cores 500 take about 20 s, while 200 already exceed the requests
served at once (32) and the connection pool (36) more than fivefold."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.conftest import add_run
from tests.live_api import LiveApi, serve_live_api

pytestmark = pytest.mark.integration

READS = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with serve_live_api(tmp_path_factory.mktemp("load") / "home") as api:
        with api.sessions()() as session:
            for _ in range(50):  # a full default page of runs to list
                add_run(session)
            session.commit()
        yield api


async def _at_once(api: LiveApi, count: int) -> Counter[int]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {api.admin_token}"}
    async with httpx.AsyncClient(limits=limits, timeout=120, headers=headers) as client:
        responses = await asyncio.gather(
            *(client.get(f"{api.url}/api/v1/runs") for _ in range(count))
        )
    return Counter(r.status_code for r in responses)


def test_hundreds_of_concurrent_reads_get_no_5xx(server: LiveApi) -> None:
    since = server.log_size()
    statuses = asyncio.run(_at_once(server, READS))
    assert statuses == Counter({200: READS})
    logged = [r for r in server.requests(since) if r.path == "/api/v1/runs"]
    assert len(logged) == READS and all(r.status == 200 for r in logged)
    log = Path(server.log).read_text(errors="replace")
    assert "QueuePool limit" not in log and "Traceback" not in log
