"""The API under load, over real HTTP (uvicorn), on SQLite and on PostgreSQL.

For each database: a real Redis (no worker, so submitted runs stay queued), the API under
uvicorn with its default settings, then

- ``--submissions`` experiments (one run each) submitted at once (POST /experiments);
- ``--reads`` run listings requested at once (GET /runs, the default page of 50).

Prints per phase the wall time, the p50, p95 and max latency, and the answers by status
(a 5xx is an error; a saturated server answers 503 with Retry-After).

    PYTHONPATH=. python benchmarks/api_load.py [--reads 500] [--submissions 100]
        [--databases sqlite,postgresql]

PostgreSQL is the one the ``pgserver`` wheel bundles (dev extra), as in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from backend.processes import free_port, start_redis, stop_process, wait_for_http


@dataclass
class Phase:
    name: str
    wall_s: float
    latencies_ms: list[float]
    statuses: Counter[str]

    def line(self) -> str:
        lat = sorted(self.latencies_ms)
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        errors = sum(n for s, n in self.statuses.items() if not s.startswith(("2", "4")))
        answers = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.name:<28} {len(lat):>5} {self.wall_s:>7.2f} {statistics.median(lat):>8.0f} "
            f"{p95:>8.0f} {lat[-1]:>8.0f} {errors:>6}  {answers}"
        )


async def at_once(
    count: int, request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
) -> Phase:
    """``count`` requests started together, each on its own connection."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:
        start = asyncio.Event()

        async def one() -> tuple[float, str]:
            await start.wait()
            began = time.perf_counter()
            try:
                status = str((await request(client)).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            return (time.perf_counter() - began) * 1000, status

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0.1)
        began = time.perf_counter()
        start.set()
        results = await asyncio.gather(*tasks)
        wall = time.perf_counter() - began
    return Phase("", wall, [r[0] for r in results], Counter(r[1] for r in results))


@contextlib.contextmanager
def api_server(home: Path, database_url: str) -> Iterator[tuple[str, str]]:
    """Redis and uvicorn on free ports; yields (API base URL, admin token)."""
    redis_port = free_port()
    redis = start_redis(redis_port, home / "redis")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TAPFL_")},
        "TAPFL_HOME": str(home),
        "TAPFL_DATABASE_URL": database_url,
        "TAPFL_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "TAPFL_RECONCILE_INTERVAL_S": "0",
    }
    log = (home / "uvicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        wait_for_http(f"{url}/health", proc=server, name="uvicorn", timeout=90)
        yield url, (home / "token").read_text().strip()
    finally:
        stop_process(server, timeout=30)
        stop_process(redis)
        log.close()


@contextlib.contextmanager
def database(kind: str, home: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{home / 'tapfl.db'}"
        return
    import pgserver  # the dev extra's bundled PostgreSQL

    folder = Path(tempfile.mkdtemp(prefix="tapfl-pg-"))
    folder.chmod(0o755)  # run as root, pgserver's server runs as another user
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        admin_url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("CREATE DATABASE tapfl_load"))
        admin.dispose()
        yield admin_url.replace("/postgres?", "/tapfl_load?", 1)
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def bench(kind: str, reads: int, submissions: int) -> list[Phase]:
    home = Path(tempfile.mkdtemp(prefix="tapfl-load-"))
    try:
        with database(kind, home) as url, api_server(home, url) as (api, token):
            headers = {"Authorization": f"Bearer {token}"}
            body = {"preset": "demo", "algorithm": "fedavg", "overrides": {"rounds": 2}}

            def submit(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
                return client.post(f"{api}/experiments", json=body, headers=headers)

            def list_runs(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
                return client.get(f"{api}/runs", headers=headers)

            phases = [
                (f"{kind}: {submissions} submissions", asyncio.run(at_once(submissions, submit))),
                (f"{kind}: {reads} GET /runs", asyncio.run(at_once(reads, list_runs))),
            ]
            listed = httpx.get(f"{api}/runs", headers=headers, params={"limit": 1}).json()
            stored = listed["total"]
            if stored != submissions:
                print(f"  {kind}: {stored} runs stored for {submissions} submissions")
        for name, phase in phases:
            phase.name = name
        return [phase for _, phase in phases]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    print(
        f"{'phase':<28} {'reqs':>5} {'wall s':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
        f"{'errors':>6}  answers"
    )
    for kind in args.databases.split(","):
        for phase in bench(kind, args.reads, args.submissions):
            print(phase.line(), flush=True)
    print(
        f"machine: {os.cpu_count()} cpus; python {platform.python_version()}, "
        f"{platform.platform()}; one uvicorn worker process, default TAPFL_API_CONCURRENCY"
    )


if __name__ == "__main__":
    main()
