"""The API under real uvicorn and a real Celery worker process on a real Redis, with the
real engine: submit over HTTP, wait for the worker, read the results back over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import safetensors.torch

from backend.processes import free_port, start_redis, stop_process, wait_for_http
from tap_engine.config import resolve_config
from tests.conftest import clean_env

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 600
WORKER = [
    "-m",
    "celery",
    "-A",
    "worker.celery_app:app",
    "worker",
    "-Q",
    "cpu,gpu",
    "--concurrency",
    "1",
    "--pool",
    "prefork",
    "--loglevel",
    "INFO",
]


@dataclass
class Services:
    api_url: str
    token: str
    logs: Path

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs)

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.request("POST", "/api/v1/experiments", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def wait(self, run_id: int, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.request("GET", f"/api/v1/runs/{run_id}").json()
            if run["status"] in ("succeeded", "failed", "cancelled"):
                return run
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} still {run['status']} after {timeout}s{self.dump()}")
            time.sleep(0.5)

    def dump(self) -> str:
        return "".join(
            f"\n--- {log.name} (end)\n{log.read_text(errors='replace')[-6000:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    home = tmp_path_factory.mktemp("api-worker")
    logs = home / "logs"
    logs.mkdir()
    redis_port, api_port = free_port(), free_port()
    env = clean_env(TAPFL_HOME=str(home), TAPFL_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
    procs = [start_redis(redis_port, home / "redis", log=logs / "redis.log")]
    try:
        api = _spawn(
            ["-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port", str(api_port)],
            logs / "api.log",
            env,
        )
        procs.append(api)
        procs.append(_spawn(WORKER, logs / "worker.log", env))
        api_url = f"http://127.0.0.1:{api_port}"
        wait_for_http(f"{api_url}/api/v1/health", timeout=90, proc=api, name="API")
        token = (home / "token").read_text().strip()
        yield Services(api_url, token, logs)
    finally:
        for proc in reversed(procs):
            stop_process(proc, timeout=30)


def test_health_reports_database_and_redis_up(services: Services) -> None:
    response = httpx.get(f"{services.api_url}/api/v1/health", timeout=10)
    assert response.json() == {"status": "ok", "database": True, "redis": True}


def test_a_demo_run_succeeds_with_evaluations_of_every_client_each_round(
    services: Services,
) -> None:
    # Few steps: this pins the service path, not learning.
    quick = {"rounds": 2, "eval_every": 1, "local_steps": 2, "post_iterations": 2}
    experiment = services.submit({"preset": "demo", "overrides": quick})
    [run] = experiment["runs"]
    run = services.wait(run["id"])
    assert run["status"] == "succeeded", f"{run['error']}{services.dump()}"
    assert run["round"] == 2 and run["progress"] == 1.0 and run["finished_at"]

    page = services.request("GET", f"/api/v1/runs/{run['id']}/metrics").json()
    rounds_by_client: dict[int, set[int]] = {}
    for row in page["items"]:
        rounds_by_client.setdefault(row["client"], set()).add(row["round"])
    clients = len(resolve_config("demo").scenario.clients)
    assert rounds_by_client == {client: {1, 2} for client in range(clients)}
    assert page["total"] == len(page["items"]) > 0

    csv_text = services.request("GET", f"/api/v1/runs/{run['id']}/metrics.csv").text
    assert len(csv_text.strip().splitlines()) == page["total"] + 1  # plus the header
    losses = services.request("GET", f"/api/v1/runs/{run['id']}/losses").json()
    assert {row["round"] for row in losses["items"]} == {1, 2}

    # the engine's final personalized adapters, one per client, downloadable
    artifacts = services.request("GET", f"/api/v1/runs/{run['id']}/artifacts").json()
    adapters = [a["name"] for a in artifacts if a["kind"] == "adapter"]
    assert adapters == [f"client-{c:03d}.safetensors" for c in range(clients)]
    blob = services.request("GET", f"/api/v1/runs/{run['id']}/artifacts/{adapters[0]}")
    assert blob.status_code == 200 and safetensors.torch.load(blob.content)


def test_a_failing_run_is_reported_and_the_worker_goes_on_with_the_next(
    services: Services,
) -> None:
    broken = services.submit(
        {
            "preset": "demo",
            "overrides": {
                "scenario.datasets.digits.source": "disk",
                "scenario.datasets.digits.name": "/nonexistent",
            },
        }
    )["runs"][0]
    quick = {"rounds": 1, "local_steps": 2, "post_iterations": 2}
    healthy = services.submit({"preset": "demo", "overrides": quick})["runs"][0]

    broken = services.wait(broken["id"])
    assert broken["status"] == "failed", services.dump()
    reason = broken["error"].splitlines()[0]
    assert "/nonexistent" in reason, broken["error"]
    assert "Traceback" in broken["error"]

    healthy = services.wait(healthy["id"])
    assert healthy["status"] == "succeeded", f"{healthy['error']}{services.dump()}"
